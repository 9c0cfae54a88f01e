/*
 * engine.h - the public API of the xdpdns C engine.
 *
 * This is the only header the cffi build reads (native/build_engine.py strips
 * the preprocessor lines below and hands the rest to ffi.cdef), so it holds
 * plain declarations only: no macros with arguments, no inline code.
 *
 * Conventions: functions return 0 (or a non-negative count/length) on success
 * and a negative errno on failure.  Where a failure needs words, the caller
 * passes a struct xd_error that the engine fills; the engine never prints.
 */
#ifndef XDPDNS_ENGINE_H
#define XDPDNS_ENGINE_H

#include <stddef.h>
#include <stdint.h>

struct xd_error {
	char message[512];
};

/* ---- Building a zone image ------------------------------------------------ */

/* Severity of a problem found while loading zones. */
enum {
	XD_PROBLEM_WARNING = 1,
	XD_PROBLEM_ERROR = 2,
};

/* One problem found in the zone data, with where it was found.
 * source is an index from xd_builder_add_source (or -1: no file, e.g. a
 * plugin's records), line is 0 when unknown. */
struct xd_problem {
	int severity;
	int source;
	uint32_t line;
	char message[256];
};

/* Statistics of a built or loaded image. */
struct xd_image_info {
	uint32_t version;
	uint32_t zones;
	uint64_t names;
	uint64_t rrsets;
	uint64_t records;
	uint64_t bytes;
	uint64_t overrides; /* names with override rules */
	uint32_t zone_acls; /* zones with an ACL */
};

struct xd_builder;
struct xd_image;

struct xd_builder *xd_builder_new(void);
void xd_builder_free(struct xd_builder *b);

/* Registers a file name for problem reports; returns its index (>= 0). */
int xd_builder_add_source(struct xd_builder *b, const char *path);
const char *xd_builder_source(const struct xd_builder *b, int source);

/* Adds a zone by its origin in uncompressed wire form; returns the zone's
 * index (>= 0), -EEXIST if the zone was already added (a problem is recorded
 * too), -EINVAL for a malformed name. */
int xd_builder_add_zone(struct xd_builder *b, const uint8_t *origin, size_t origin_len,
			struct xd_error *err);
/* The origin of zone `zone` in wire form (its length in *len), or NULL. */
const uint8_t *xd_builder_zone_origin(const struct xd_builder *b, int zone, size_t *len);

/* Adds one record to zone `zone`.  owner and rdata are uncompressed wire
 * form; names inside rdata must be uncompressed.  Records outside the zone
 * and misplaced data are recorded as problems with source/line; the return
 * value is 0, or -EINVAL when this record was rejected (a problem says why),
 * or -ENOMEM. */
int xd_builder_add_record(struct xd_builder *b, int zone, const uint8_t *owner, size_t owner_len,
			  uint16_t rtype, uint16_t rclass, uint32_t ttl, const uint8_t *rdata,
			  size_t rdata_len, int source, uint32_t line);

/* Reads an RFC 1035 master file into zone `zone` through libzscanner,
 * expanding $GENERATE and following $INCLUDE relative to the including
 * file's directory.  default_ttl is used until a $TTL or an SOA sets one.
 * Every syntax error becomes a problem (with file and line); returns 0,
 * -EINVAL when the file had errors, or another negative errno when it could
 * not be read (also recorded as a problem). */
int xd_builder_load_zonefile(struct xd_builder *b, int zone, const char *path,
			     uint32_t default_ttl);

/*
 * A secondary zone with no data to serve: not yet transferred, or past its
 * SOA expire.  It stays one of our zones (not REFUSED), and every query in
 * it, transfers too, gets SERVFAIL, as BIND, Knot and NSD answer.  It must
 * get no records.  Returns 0 or -EINVAL for no such zone.
 */
int xd_builder_set_zone_expired(struct xd_builder *b, int zone);

/*
 * Adds to zone `zone` every record of the zone with the same origin in img
 * (as a transfer of it would send them), but those listed in skip: each an
 * uncompressed RR (owner, type, class, TTL, RDLENGTH, RDATA), one after the
 * other, skip_len bytes in all.  A skip record matches a record of the
 * same owner, type and RDATA, names compared without regard to case; its
 * TTL does not count.  This is how a secondary applies an incremental
 * transfer (RFC 1995): the served zone, less what was deleted, then what
 * was added.  *missing gets the index in skip of the first record that
 * matched none (a deletion of something the zone does not have), or -1.
 * Returns 0, -ENOENT when img has no such zone, -EINVAL for a malformed
 * skip list, -ENOMEM.
 */
int xd_builder_copy_zone(struct xd_builder *b, int zone, const struct xd_image *img,
			 const uint8_t *skip, size_t skip_len, int *missing);

/* The resolver hook that NOTIFY messages (RFC 1996) are deferred to: the
 * server's own, which answers them after its checks.  Without one they
 * get NOTIMP.  Returns 0, -EINVAL for a hook past XD_RESOLVER_HOOKS_MAX. */
int xd_builder_set_notify_hook(struct xd_builder *b, int hook);

/* Adds a TSIG key (RFC 8945) that requests may be signed with, and that
 * zone transfer lists may name (struct xd_acl_rule's key: the index this
 * returns, plus one).  name is wire form; algorithm one of "hmac-sha1",
 * "hmac-sha224", "hmac-sha256", "hmac-sha384", "hmac-sha512"; the secret
 * 1 to 512 bytes.  Returns the key's index, or -EINVAL (err says why:
 * a bad name or algorithm, a name given twice), -ENOMEM. */
int xd_builder_add_tsig_key(struct xd_builder *b, const uint8_t *name, size_t name_len,
			    const char *algorithm, const uint8_t *secret, size_t secret_len,
			    struct xd_error *err);

/* Records a problem (used by the zone file reader and by callers). */
int xd_builder_add_problem(struct xd_builder *b, int severity, int source, uint32_t line,
			   const char *message);
size_t xd_builder_problem_count(const struct xd_builder *b);
int xd_builder_problem(const struct xd_builder *b, size_t index, struct xd_problem *out);

/* Runs the zone checks (SOA and NS at the apex, CNAME beside other data,
 * missing glue, ...), recording problems; returns the number of errors. */
int xd_builder_check(struct xd_builder *b);

/* What the server says about itself, compiled into the image: the TXT
 * answers to CHAOS-class queries for version.bind and version.server,
 * hostname.bind, id.server, and the EDNS NSID option (RFC 5001) sent to
 * queries that ask for it.  One that is never set stays hidden (REFUSED,
 * no NSID). */
enum {
	XD_IDENTITY_VERSION = 0,
	XD_IDENTITY_HOSTNAME = 1,
	XD_IDENTITY_ID = 2,
	XD_IDENTITY_NSID = 3,
	XD_IDENTITY_COUNT = 4,
};

/* Sets one identity item (XD_IDENTITY_*) to len bytes (at most 255). */
int xd_builder_set_identity(struct xd_builder *b, int which, const uint8_t *data, size_t len);

/* ---- Overrides: per-name rules compiled into the image -------------------- */

/* What a query gets when an override rule holds its name, whatever the
 * zones say (docs/IMAGE.md, "Overrides"). */
enum {
	XD_OVERRIDE_NXDOMAIN = 1, /* AA, and the SOA of the zone holding the
					 * qname when we serve one */
	XD_OVERRIDE_NODATA = 2, /* NOERROR, no records; SOA as above */
	XD_OVERRIDE_REFUSED = 3,
	XD_OVERRIDE_ANSWER = 4, /* the rule's records, owned by the qname */
	XD_OVERRIDE_RESOLVER = 5, /* claimed by a resolver plugin: answered
					 * from the resolver cache, else deferred
					 * (XD_ANSWER_DEFER), else SERVFAIL */
};

/* Creates a rule that any number of names may share: an XD_OVERRIDE_*
 * action and its value: for XD_OVERRIDE_ANSWER the TTL of its records
 * (added with xd_builder_add_override_record), for XD_OVERRIDE_RESOLVER
 * the index of the resolver hook that answers its names (0 to
 * XD_RESOLVER_HOOKS_MAX - 1).  Returns the rule's index (>= 0). */
int xd_builder_add_override_rule(struct xd_builder *b, int action, uint32_t value,
				 struct xd_error *err);
/* Adds one record of class IN (uncompressed wire rdata) to the answer of
 * rule `rule`, an XD_OVERRIDE_ANSWER rule.  -EINVAL (err says why) for a
 * type that cannot be data, a CNAME beside other types, or another rule. */
int xd_builder_add_override_record(struct xd_builder *b, int rule, uint16_t rtype,
				   const uint8_t *rdata, size_t rdata_len, struct xd_error *err);
/* Applies rule `rule` to name (uncompressed wire form, any case): to the name
 * alone, or with subtree to the name and every name below it.  Returns 1
 * when added, 0 when the name had a rule of that kind already (the first one
 * added stays, so callers add in order of precedence), -EINVAL (err says
 * why) for a malformed name or an unknown rule. */
int xd_builder_add_override(struct xd_builder *b, const uint8_t *name, size_t len, int subtree,
			    int rule, struct xd_error *err);
/* Applies rule `rule` to every name of a blocklist file: one name per line
 * in master-file text (a final dot optional), a leading "*." meaning the
 * subtree (as subtree does for every line), "#" starting a comment, blank
 * lines ignored.  Every bad line becomes a problem with the file and line;
 * returns 0, -EINVAL when the file had bad lines (err: the first, as
 * FILE:LINE: message), or another negative errno when it could not be read
 * (a problem too). */
int xd_builder_load_blocklist(struct xd_builder *b, const char *path, int rule, int subtree,
			      struct xd_error *err);

/* ---- Zone ACLs: who may query a zone, and who may transfer it ------------ */

struct xd_acl_rule;
struct xd_client;

/* The two lists of a zone's ACL (docs/IMAGE.md, "Zone ACLs"). */
enum {
	XD_ZONE_ACL_QUERY = 0, /* queries for names in the zone */
	XD_ZONE_ACL_TRANSFER = 1, /* AXFR and IXFR of the zone */
	XD_ZONE_ACL_LISTS = 2,
	/* Prefixes of one family in one list.  A list is scanned, longest
	 * prefix first: per-zone lists name a few secondaries or networks,
	 * and the bound keeps a scan short. */
	XD_ZONE_ACL_MAX = 1024,
};

/* Sets list `list` (XD_ZONE_ACL_*) of zone `zone`: rules[0..n) (a prefix
 * given twice keeps its first rule; the longest prefix holding a client
 * decides) and default_action (XD_ACL_ALLOW or XD_ACL_DENY) for a client
 * that no prefix holds, a client of unknown family included.  A list never
 * set lets every client query and none transfer.  -EINVAL or -E2BIG (err
 * says why) for a bad rule, zone or list, or too many prefixes. */
int xd_builder_set_zone_acl(struct xd_builder *b, int zone, int list,
			    const struct xd_acl_rule *rules, int n, uint32_t default_action,
			    struct xd_error *err);

/* Checks and compiles everything added into an image.  Fails with -EINVAL
 * (and a message) when any error-severity problem exists. */
int xd_builder_finish(struct xd_builder *b, struct xd_image **out, struct xd_error *err);

/* ---- The zone image ------------------------------------------------------- */

/* Validates a serialized image (header, version, checksum, every offset) and
 * copies it into a new image. */
int xd_image_load(const uint8_t *data, size_t len, struct xd_image **out, struct xd_error *err);
/* The serialized bytes of an image, for writing to disk. */
const uint8_t *xd_image_data(const struct xd_image *img, size_t *len);
void xd_image_info(const struct xd_image *img, struct xd_image_info *out);
/* Lets go of an image: freed when its last holder (a transfer still
 * sending it) lets go. */
void xd_image_free(struct xd_image *img);
/* Whether list `list` (XD_ZONE_ACL_*) of the zone whose origin is `origin`
 * (wire form, any case) lets `client` in (NULL: unknown): 1 or 0, -ENOENT
 * when the image has no such zone, -EINVAL for another list.  What the
 * answering core asks for queries and transfers; here for callers outside
 * it (a zone transfer, tests). */
int xd_image_zone_allows(const struct xd_image *img, const uint8_t *origin, size_t len, int list,
			 const struct xd_client *client);

/* ---- The answering core --------------------------------------------------- */

enum {
	XD_ANSWER_TCP = 1, /* no UDP size limit; length prefix not written */
	XD_ANSWER_DEFER = 2, /* a name claimed by the resolver hook and not
				 * in its cache returns -EAGAIN instead of
				 * SERVFAIL: the caller hands the query over */
};

/* Answers one DNS query (the DNS message only, no length prefix).  Writes the
 * response into resp (at most cap bytes) and returns its length, or 0 when no
 * response must be sent (the packet is a response itself, or too short to
 * carry an ID).  cap must be at least 512. */
int xd_answer(const struct xd_image *img, const uint8_t *query, size_t qlen, uint8_t *resp,
	      size_t cap, unsigned flags);

/* ---- The engine: published image and socket-mode workers ------------------ */

struct xd_engine;

/* One address to serve on; host is a numeric IPv4 or IPv6 address. */
struct xd_listen {
	char host[64];
	uint16_t port;
};

/* Counters of one worker, whatever its transport (a UDP worker's are these
 * alone, an AF_XDP queue's begin with them); the names are the ones used
 * in logs and stats. */
struct xd_worker_stats {
	uint64_t received;
	uint64_t answered;
	uint64_t dropped;
	uint64_t truncated;
	uint64_t batches;
	uint64_t denied; /* from sources the ACL denies (also in
					 * answered or dropped, per socket_verdict) */
	uint64_t limited; /* responses rate limiting withheld: dropped
					 * (also in dropped) or slipped */
	uint64_t slipped; /* of those, sent truncated (also in
					 * answered) */
	uint64_t deferred; /* handed to the resolver hook; counted in
					 * answered (or dropped) when their
					 * answers leave */
	uint64_t resolver_full; /* answered SERVFAIL at once: the
					 * worker held as many deferred queries
					 * as it may */
	uint64_t resolver_expired; /* answered SERVFAIL: the hook's answer
					 * did not come back in time */
	uint64_t rcode[16]; /* responses made, by RCODE */
	uint64_t qtype[16]; /* and by query type (xd_qtype_bucket_of) */
};

/* The bucket (0..15) responses to queries of type qtype are counted in:
 * common types each have their own (all below 512), every other type is
 * bucket 0. */
int xd_qtype_bucket_of(uint16_t qtype);

int xd_engine_new(struct xd_engine **out, struct xd_error *err);
/* Stops workers (if running) and frees the engine and its image. */
void xd_engine_free(struct xd_engine *e);

/* Publishes img (the engine takes ownership) with one atomic pointer swap;
 * the previous image is freed once every reader has moved past it.  Never
 * stops answering. */
int xd_engine_set_image(struct xd_engine *e, struct xd_image *img);
/* The image published last, or NULL; borrowed: valid until the next
 * xd_engine_set_image, which only its caller's own thread may make
 * meanwhile (the server publishes from one reload at a time). */
const struct xd_image *xd_engine_image(struct xd_engine *e);

/* Answers with the engine's current image; safe to call from any thread
 * while workers run.  Same contract as xd_answer. */
int xd_engine_answer(struct xd_engine *e, const uint8_t *query, size_t qlen, uint8_t *resp,
		     size_t cap, unsigned flags);

/* Starts `workers` UDP worker threads; each binds one SO_REUSEPORT socket per
 * listen address.  A port of 0 is chosen by the kernel for the first worker
 * and shared by the others; xd_engine_udp_port tells which. */
int xd_engine_udp_start(struct xd_engine *e, const struct xd_listen *listen, int nlisten,
			int workers, struct xd_error *err);
int xd_engine_udp_port(const struct xd_engine *e, int listen_index);
int xd_engine_udp_stop(struct xd_engine *e);
int xd_engine_worker_count(const struct xd_engine *e);
int xd_engine_worker_stats(const struct xd_engine *e, int worker, struct xd_worker_stats *out);

/* ---- TCP (RFC 7766): native/io/tcp.c -------------------------------------- */

/* The limits of the TCP workers; times in milliseconds, 0: no limit where
 * the field says so. */
struct xd_tcp_config {
	int workers; /* threads, 1 to 64 */
	uint32_t max_connections; /* open at once, all clients */
	uint32_t max_client_connections; /* from one address (IPv6: its /64) */
	uint32_t idle_timeout_ms; /* nothing asked, nothing owed: closed */
	uint32_t io_timeout_ms; /* a message begun must arrive, and an
					 * answer owed must move, within this */
	uint32_t max_queries; /* per connection; 0: no limit */
	uint32_t lifetime_ms; /* per connection; 0: no limit */
	uint32_t max_transfers; /* outgoing zone transfers at once */
};

/* The TCP workers' counters, summed over the workers. */
struct xd_tcp_stats {
	struct xd_worker_stats core; /* queries as every worker counts them */
	uint64_t connections; /* accepted and served */
	uint64_t open; /* open now */
	uint64_t rejected; /* closed at once: max_connections */
	uint64_t client_rejected; /* closed at once: max_client_connections */
	uint64_t denied_closed; /* closed: the source ACL drops the client */
	uint64_t idle_closed; /* closed by the idle timeout */
	uint64_t io_timeouts; /* closed: a message or an answer stalled */
	uint64_t limit_closed; /* closed after max_queries or the lifetime */
	uint64_t transfers; /* zone transfers sent whole */
	uint64_t transfers_refused; /* REFUSED: max_transfers were running */
	uint64_t transfers_failed; /* cut short: the client left or stalled,
					 * or an RRset outgrew a message */
};

/* Starts the TCP workers: each listens on every address with a
 * SO_REUSEPORT socket of its own (port 0: the kernel picks one for the
 * first, which the rest share; xd_engine_tcp_port tells it), accepts,
 * answers pipelined queries as they come (deferred ones when their answer
 * does), streams zone transfers, and enforces cfg's limits. */
int xd_engine_tcp_start(struct xd_engine *e, const struct xd_listen *listen, int nlisten,
			const struct xd_tcp_config *cfg, struct xd_error *err);
int xd_engine_tcp_port(const struct xd_engine *e, int listen_index);
void xd_engine_tcp_stats(const struct xd_engine *e, struct xd_tcp_stats *out);
/* Closes every connection and stops the workers. */
int xd_engine_tcp_stop(struct xd_engine *e);

/* ---- DNSSEC ---------------------------------------------------------------- */

/* The owner label of the NSEC3 record for name (wire, root included, any
 * case): a length byte (32) and the base32hex (RFC 4648 7, lower case) of
 * its hash under algorithm alg (1: SHA-1, the only one RFC 5155 defines),
 * salt and iterations (RFC 5155 5); XD_NSEC3_LABEL_LEN bytes into out.
 * -ENOTSUP for another algorithm. */
enum {
	XD_NSEC3_LABEL_LEN = 33
};
int xd_nsec3_label(const uint8_t *name, size_t len, uint8_t alg, const uint8_t *salt,
		   size_t salt_len, unsigned iterations, uint8_t *out);
/* The same label for a hash already made (an NSEC3's next hashed owner):
 * -EINVAL unless it is a SHA-1 hash (20 bytes). */
int xd_nsec3_encode(const uint8_t *hash, size_t len, uint8_t *out);

/* Signing (native/zone/dnssec_sign.c): keys in the files BIND's dnssec-keygen
 * and Knot's keymgr write, K<zone>+<alg>+<tag>.key and .private. */
enum {
	XD_ALG_ECDSAP256SHA256 = 13, /* RFC 6605 */
	XD_ALG_ED25519 = 15, /* RFC 8080 */
};

struct xd_sign_key;

struct xd_sign_key_info {
	uint8_t algorithm;
	uint16_t flags; /* 257: a KSK (SEP), 256: a ZSK */
	uint16_t tag; /* RFC 4034 Appendix B */
	uint8_t dnskey[68]; /* the DNSKEY RDATA */
	size_t dnskey_len;
};

/* One RRset to sign: its owner and the zone's origin (the signer) in wire
 * form, any case; the RDATA of its records as they go on the wire
 * (uncompressed); its TTL and the signature's validity, UNIX times (RFC
 * 4034 3.1.5: serial arithmetic past 2106). */
struct xd_sign_rrset {
	const uint8_t *owner;
	size_t owner_len;
	const uint8_t *signer;
	size_t signer_len;
	uint16_t type;
	uint32_t ttl;
	uint32_t inception;
	uint32_t expiration;
	const uint8_t *const *rdatas;
	const uint16_t *rdlens;
	int count;
};

/* Reads the key whose files are base + ".key" and base + ".private"
 * (algorithms 13 and 15); err names the file and the problem. */
int xd_sign_key_load(const char *base, struct xd_sign_key **out, struct xd_error *err);
void xd_sign_key_free(struct xd_sign_key *k);
int xd_sign_key_info(const struct xd_sign_key *k, struct xd_sign_key_info *out);
/* The RDATA of the RRSIG of s made with k into out (RFC 4034 3.1.8.1);
 * its length, or a negative errno with err set. */
int xd_sign_rrset(const struct xd_sign_key *k, const struct xd_sign_rrset *s, uint8_t *out,
		  size_t cap, struct xd_error *err);

/* Signing zone `zone` of a builder (native/zone/zone_sign.c): DNSKEYs, an NSEC
 * or NSEC3 chain (RFC 9276 parameters), an RRSIG per authoritative RRset
 * per key that signs it (KSKs the DNSKEY RRset, ZSKs the rest; one kind
 * alone signs all), valid from inception to expiration (UNIX times).
 * Before xd_builder_check, which then checks the signed zone.  A zone that
 * has RRSIG, NSEC or NSEC3 records already is refused.
 *
 * With `previous` (the image being served, which must stay published
 * until this returns), an RRSIG that the previous image has for the same
 * RRset (owner, type, TTL, canonical RDATA), made by a key whose DNSKEY
 * it published, is kept instead of made again when it expires after
 * keep_after and its inception is not after `inception`: a reload signs
 * only what changed, and what is due for refresh. */
struct xd_zone_sign_config {
	struct xd_sign_key **keys;
	int nkeys;
	int nsec3;
	uint32_t inception;
	uint32_t expiration;
	const struct xd_image *previous; /* or NULL: sign everything */
	uint32_t keep_after;
	/* The serial the zone is served with now (has_served 0: none, the
	 * zone's own is signed).  Unless the zone's SOA has a newer one (RFC
	 * 1982), the signed zone keeps it when no signature had to be made,
	 * and takes the next one when any did: secondaries see every change,
	 * signatures renewed on a timer included (Knot's serial-policy
	 * increment). */
	uint32_t served_serial;
	int has_served;
};

/* What a signing did: the RRSIGs it made and kept, and when the first
 * of them expires (the zone must be signed again before that); the SOA
 * serial signed, and the one the zone came with. */
struct xd_zone_sign_report {
	uint64_t made;
	uint64_t kept;
	uint32_t earliest_expiration;
	uint32_t serial;
	uint32_t zone_serial;
};

int xd_builder_sign_zone(struct xd_builder *b, int zone, const struct xd_zone_sign_config *cfg,
			 struct xd_zone_sign_report *report, struct xd_error *err);

/* ---- dnstap (native/io/dnstap.c) ------------------------------------------------ */

/* What is logged: one query in `sample` per worker, as dnstap.proto's
 * AUTH_QUERY and/or AUTH_RESPONSE, to the Frame Streams collector
 * listening on socket_path. */
struct xd_dnstap_config {
	const char *socket_path;
	const char *identity; /* "" or NULL: none */
	const char *version;
	uint32_t sample;
	int queries;
	int responses;
};

struct xd_dnstap_stats {
	uint64_t events; /* queries sampled */
	uint64_t written; /* messages written to the collector */
	uint64_t lost_full; /* events lost: a worker's ring was full */
	uint64_t lost_unconnected; /* messages lost: no collector */
	uint64_t connects; /* handshakes completed */
	int connected;
	char error[256]; /* why the collector is not connected */
};

/* Starts the dnstap writer; before the workers start, which take their
 * rings from it (a worker started earlier logs nothing). */
int xd_engine_dnstap_start(struct xd_engine *e, const struct xd_dnstap_config *cfg,
			   struct xd_error *err);
/* After the workers stopped: writes what is left and stops the writer. */
void xd_engine_dnstap_stop(struct xd_engine *e);
/* 1 with *out filled while dnstap runs, else 0. */
int xd_engine_dnstap_stats(struct xd_engine *e, struct xd_dnstap_stats *out);

/*
 * An outgoing zone transfer (AXFR, RFC 5936; IXFR, RFC 1995: the
 * journal's changes from the query's serial on, xd_image_journal_derive,
 * else the whole zone, or the SOA alone when the query's SOA has the
 * zone's serial or a newer one) for query from client, from the published
 * image: TCP messages, each with its 2-byte length prefix, one after the
 * other in out, the zone's apex SOA first and last.  Returns 0 with *len the bytes
 * written; -ENOSPC with *len the bytes it needs (call again with that
 * much room: a reload between the calls may change it); -EMSGSIZE for an
 * RRset too large for a TCP message with its owner; -EPERM when the
 * zone's transfer ACL does not allow the client; -ENOENT when the qname is
 * not the apex of a zone served; -EINVAL for a query that is not an AXFR
 * or IXFR of class IN; -ENODATA without an image.  For the last three the
 * caller answers with xd_engine_answer_client, which says REFUSED.
 */
int xd_engine_axfr(struct xd_engine *e, const struct xd_client *client, const uint8_t *query,
		   size_t qlen, uint8_t *out, size_t cap, size_t *len);

/* The SOA serial of the served zone whose origin is name (wire form, any
 * case), whatever its ACL says (for NOTIFY): 0, -ENOENT for no such zone,
 * -ENODATA without an image. */
int xd_engine_zone_serial(struct xd_engine *e, const uint8_t *name, size_t len, uint32_t *serial);

/* The same of the zone in img, an image that is not published (-ENOENT
 * also for a zone with no data to serve). */
int xd_image_zone_serial(const struct xd_image *img, const uint8_t *name, size_t len,
			 uint32_t *serial);

/* ---- The journal: what publications changed, for IXFR out (RFC 1995) ---- */

/* How much of each zone's history is kept. */
struct xd_journal_limits {
	uint32_t depth; /* changesets per zone; 0: no journal (IXFR gets the
			 * whole zone) */
	uint64_t bytes; /* their bytes per zone at most; the oldest go first */
};

enum xd_journal_kind {
	XD_JOURNAL_RECORDED = 1, /* a changeset from serial_from to serial_to */
	/* Each of these empties the zone's journal: */
	XD_JOURNAL_SAME_SERIAL = 2, /* the data changed, the serial did not */
	XD_JOURNAL_OLDER_SERIAL = 3, /* the serial is not newer (RFC 1982) */
	XD_JOURNAL_TOO_LARGE = 4, /* one change is over the bytes limit */
};

/* What happened to one zone's journal. */
struct xd_journal_event {
	uint8_t origin[255]; /* lower-case wire form */
	uint8_t origin_len;
	int kind; /* enum xd_journal_kind */
	uint32_t serial_from;
	uint32_t serial_to;
	uint32_t removed; /* records the change removed, SOA not counted */
	uint32_t added;
	uint32_t depth; /* changesets the zone's journal holds now */
	uint64_t bytes; /* and their bytes */
};

/*
 * Gives img, an image about to replace prev (the image being served,
 * which must stay published until this returns; NULL: none), its journal:
 * prev's changesets, and for each zone that both hold, that may be
 * transferred, and whose data changed, one more, within limits.  IXFR out
 * (xd_axfr_begin) sends a client the changesets from its serial on.  One
 * event per zone whose journal did more than carry on, at most cap of
 * them; *nevents: how many.  0, or -ENOMEM (img keeps no journal).
 */
int xd_image_journal_derive(struct xd_image *img, const struct xd_image *prev,
			    const struct xd_journal_limits *limits, struct xd_journal_event *events,
			    size_t cap, size_t *nevents);

/* What the published image's journal holds for one zone. */
struct xd_journal_info {
	uint32_t depth; /* changesets */
	uint32_t oldest_serial; /* the first one's serial_from (depth > 0):
				 * an IXFR from it or later gets changes */
	uint64_t bytes;
};

/* The journal of the served zone whose origin is name (wire form, any
 * case): 0, -ENOENT for no such zone, -ENODATA without an image. */
int xd_engine_zone_journal(struct xd_engine *e, const uint8_t *name, size_t len,
			   struct xd_journal_info *out);

/* ---- The resolver hook: names that Python answers -------------------------- */

/*
 * A query for a name a resolver plugin claims, when the resolver cache has
 * no answer, is deferred by the worker that received it (a socket-mode UDP
 * worker or an AF_XDP queue worker): the worker keeps it with what its
 * answer needs to leave (socket and addresses, or the frame's headers) and
 * puts its handle on the ring of the hook that claimed the name.  The
 * hook's thread takes queries (xd_engine_resolver_take), answers them, and
 * hands each answer back (xd_engine_resolver_answer) to the worker, which
 * sends it with its own answers, through rate limiting, from its own
 * socket or TX ring.  A query whose answer has not come back within the
 * timeout is answered SERVFAIL by its worker, so a slow hook never holds a
 * worker.  TCP workers defer the same way; their answers may be as long
 * as a TCP message holds.
 */
enum {
	XD_RESOLVER_HOOKS_MAX = 32, /* plugins that answer claimed names */
	XD_RESOLVER_QUERY_MAX = 512, /* longer queries get SERVFAIL */
	XD_RESOLVER_ANSWER_MAX = 1232, /* the UDP payload we advertise */
};

struct xd_resolver_config {
	uint32_t ring_size; /* deferred queries per worker; power of 2 */
	uint32_t cache_size; /* cached answers; power of 2, 0: none */
	uint32_t hooks; /* hook threads: 1 to XD_RESOLVER_HOOKS_MAX */
	uint32_t timeout_ms; /* a deferred query's answer must come back
					 * within this, else SERVFAIL */
};

/* A deferred query as a hook's thread takes it. */
struct xd_resolver_query {
	uint32_t endpoint; /* the worker that holds it ... */
	uint32_t seq; /* ... and its handle there */
	int family; /* AF_INET or AF_INET6 */
	uint16_t port; /* the client's, host order */
	uint8_t ip[16]; /* the client's; IPv4: the first 4 */
	int tcp; /* came over TCP: its answer may take
					 * 65535 bytes */
	uint32_t len;
	uint8_t query[XD_RESOLVER_QUERY_MAX];
};

/* Sets the resolver up, before any worker starts (their deferred queries
 * and rings are made as they start) and the cache; once per engine
 * (-EBUSY after). */
int xd_engine_resolver_start(struct xd_engine *e, const struct xd_resolver_config *cfg,
			     struct xd_error *err);
/* The eventfd of hook `hook`: readable when queries wait for it, after
 * xd_engine_resolver_idle said so. */
int xd_engine_resolver_fd(const struct xd_engine *e, unsigned hook);
/* Moves up to max deferred queries for hook `hook` into out; returns how
 * many.  One caller per hook at a time. */
int xd_engine_resolver_take(struct xd_engine *e, unsigned hook, struct xd_resolver_query *out,
			    int max);
/* Before the caller of take for `hook` sleeps on its eventfd: 1 when it
 * may (no query waits, and the next one deferred writes the eventfd), 0
 * when a query came meanwhile (take again). */
int xd_engine_resolver_idle(struct xd_engine *e, unsigned hook);

/* What xd_engine_resolver_answer hands back. */
enum {
	XD_RESOLVER_RECORDS = 0, /* packed records, made into the response
					 * by the worker's answering core (as
					 * xd_engine_resolver_build does) */
	XD_RESOLVER_WIRE = 1, /* a whole response, sent as it is */
	XD_RESOLVER_SERVFAIL = 2, /* SERVFAIL from the answering core */
};
/*
 * Hands the answer to q back to the worker that holds it; nothing is sent
 * until xd_engine_resolver_flush wakes the worker.  RECORDS: data and
 * header as xd_engine_resolver_build takes them, cached for cache_ttl
 * seconds (0: not) when they hold a record and fit an entry (*cached says,
 * when not NULL).  WIRE: data is the response (at most
 * XD_RESOLVER_ANSWER_MAX bytes, or 65535 for a TCP query: -EMSGSIZE).  Returns 0, -EINVAL for
 * malformed records, header or kind, -ENOBUFS when the worker's ring of
 * answers is full (the query gets SERVFAIL at its deadline).  An answer
 * that comes after the deadline is dropped by the worker.  Any thread.
 */
int xd_engine_resolver_answer(struct xd_engine *e, const struct xd_resolver_query *q, int kind,
			      const uint8_t *data, size_t len, unsigned header, uint32_t cache_ttl,
			      int *cached);
/* Wakes the workers that were given answers since the last flush. */
void xd_engine_resolver_flush(struct xd_engine *e);
/* Caches a response of the hook for ttl seconds: resp[question_end..len)
 * (no OPT record: each query gets its own) and its header, keyed by name
 * (lower-case wire), qtype and qclass. */
int xd_engine_resolver_cache(struct xd_engine *e, const uint8_t *name, size_t name_len,
			     uint16_t qtype, uint16_t qclass, const uint8_t *resp, size_t len,
			     size_t question_end, uint32_t ttl);

/*
 * A hook's answer in its fast form (xdpdns.hookspecs.Answer), made into a
 * response without dnspython (for TCP, which the listener sends itself).
 * records[0..records_len) packs each record as its type (2 bytes), TTL (4)
 * and RDLENGTH (2), network order, then its RDATA: every record is owned
 * by the query name and of class IN.  header holds the response's AA bit
 * (XD_RESOLVER_AA) and its RCODE (0 to 15).  The response comes from the
 * answering core as for a cached answer: the query's ID, opcode, RD and
 * CD, its question as the client wrote it, the records in the answer
 * section, and an OPT (with the client's cookie and the NSID it asked for)
 * when the query had one; TC and the question only when the records do not
 * fit the client's UDP size (with XD_ANSWER_TCP in flags: 65535 bytes, or
 * cap).  A name that the published image no longer claims is answered from
 * the image instead.  With cache_ttl (seconds, 0: not cached) and at least
 * one record the answer is also cached for the query's (name, type,
 * class), as xd_engine_resolver_cache does; *cached (when not NULL) tells
 * whether it was (larger than a cache entry: not).  client NULL: unknown
 * (no cookie).  Returns the response's length, 0 for nothing to send,
 * -EINVAL for malformed records or header, -ENODATA without an image.
 */
enum {
	XD_RESOLVER_AA = 0x0400, /* the AA bit of the header's flags */
	XD_RESOLVER_RECORD_HEAD = 8, /* type, TTL, RDLENGTH */
};
struct xd_client;
int xd_engine_resolver_build(struct xd_engine *e, const struct xd_client *client,
			     const uint8_t *query, size_t qlen, const uint8_t *records,
			     size_t records_len, unsigned header, uint32_t cache_ttl, uint8_t *resp,
			     size_t cap, unsigned flags, int *cached);

/* ---- XDP mode: the XDP program and the AF_XDP workers --------------------- */

enum {
	XD_HUGEPAGES_OFF = 0,
	XD_HUGEPAGES_AUTO = 1, /* hugepages, else normal pages + warning */
	XD_HUGEPAGES_REQUIRED = 2, /* hugepages or fail */
};

enum {
	XD_ZEROCOPY_AUTO = 0, /* zero-copy where the driver offers it */
	XD_ZEROCOPY_OFF = 1,
	XD_ZEROCOPY_REQUIRED = 2,
};

/* The longest busy_poll_wait_us (config.py checks the same): a second of
 * spinning is far past what any sleep costs, and in nanoseconds it still
 * fits 32 bits. */
enum {
	XD_BUSY_POLL_WAIT_MAX_US = 1000000
};

struct xd_xdp_config {
	char ifname[16];
	char bpf_object[512]; /* path of the compiled xdpdns.bpf.o */
	int queues; /* 0: every queue of the NIC */
	int first_queue;
	uint32_t frames_per_queue; /* UMEM frames of one queue */
	uint32_t frame_size; /* 2048 or 4096 */
	uint32_t ring_size; /* rx, tx, fill and completion rings */
	int hugepages; /* XD_HUGEPAGES_* */
	int hugepage_mb; /* 2 or 1024 */
	int zerocopy; /* XD_ZEROCOPY_* */
	int generic; /* 1: generic (skb) mode only */
	int verify_checksums; /* drop frames whose checksums are wrong */
	int busy_poll; /* workers run the NIC's NAPI themselves */
	uint32_t busy_poll_wait_us; /* the longest an idle worker busy polls
					 * before it sleeps in poll(); it adapts
					 * below that.  0: it sleeps at once */
	int answers; /* XD_ANSWERS_ALL or XD_ANSWERS_OFF */
	int attach; /* XD_ATTACH_LINK or XD_ATTACH_DISPATCHER */
};

/* How the XDP program goes onto the interface ([xdp] attach). */
enum {
	XD_ATTACH_LINK = 0, /* a bpf_link of its own: alone on the
					 * interface, gone with the process */
	XD_ATTACH_DISPATCHER = 1, /* one program of libxdp's dispatcher,
					 * pinned in bpffs */
};

/* Whether the XDP program answers from its answer table ([xdp] answers). */
enum {
	XD_ANSWERS_OFF = 0,
	XD_ANSWERS_ALL = 1,
};

/* Where the XDP program's answer table stands. */
enum {
	XD_ANSWERS_STATE_OFF = 0, /* [xdp] answers = "off" */
	XD_ANSWERS_STATE_ON = 1, /* in force */
	XD_ANSWERS_STATE_PAUSED = 2, /* rate limiting is on: the workers
					 * answer everything, so that every
					 * response is counted */
	XD_ANSWERS_STATE_FAILED = 3, /* could not be built: message says why */
};

/* The answer table of the image in force (or of the last try). */
struct xd_answers_info {
	int state; /* XD_ANSWERS_STATE_* */
	uint64_t names; /* names asked about */
	uint64_t entries; /* keys in the table */
	uint64_t do_entries; /* of those, answers to DO=1 of names
					 * whose answers it changes */
	uint64_t skipped; /* answers left to the workers: too long,
					 * not the same for every query, or
					 * under a zone ACL */
	uint64_t pages; /* of XD_ANSWER_PAGE_VALUE bytes */
	uint64_t bytes; /* the maps' memory, as the kernel
					 * counts it (memlock) */
	uint64_t compile_us; /* asking the core */
	uint64_t install_us; /* writing the maps */
	char message[256];
};

/* What XDP mode ended up with: modes, memory, where it runs. */
struct xd_xdp_info {
	int queues;
	int first_queue;
	int native; /* XDP in driver mode, else generic */
	int zerocopy;
	int busy_poll; /* granted on every queue */
	int hugepages; /* UMEM in hugepages */
	int numa_node; /* the NIC's node, -1: none */
	uint64_t umem_bytes; /* per queue */
	uint32_t prog_id; /* the kernel's id of the XDP program */
	char warnings[512]; /* fallbacks taken, one per line */
};

/* Counters of one AF_XDP queue worker. */
struct xd_queue_stats {
	struct xd_worker_stats core; /* as a UDP worker's (worker_core.c) */
	uint64_t bad_checksum; /* IPv4 header or UDP checksum wrong */
	uint64_t malformed; /* not a well-formed UDP/DNS packet */
	uint64_t tx_full; /* answers lost to a full TX ring */
	uint64_t kicks; /* sendto wakeups */
	uint64_t busy_polls; /* busy polls of an empty rx ring */
	uint64_t sleeps; /* times the worker slept in poll() */
	/* Where the queue's frames are now: they add up to the UMEM's frames,
	 * always (a leak shows as a shortfall). */
	uint64_t frames_fill;
	uint64_t frames_rx;
	uint64_t frames_tx;
	uint64_t frames_free;
	uint64_t frames_total;
	/* The kernel's count for this socket (XDP_STATISTICS): queries lost
	 * before they reached the worker. */
	uint64_t kernel_rx_dropped; /* no room in the UMEM */
	uint64_t kernel_rx_ring_full; /* the worker fell behind */
	uint64_t kernel_fill_empty; /* no free frame on the fill ring */
	int cpu; /* where the worker is pinned */
};

/* The XDP program's per-CPU counters (bpf/xdpdns_maps.h). */
struct xd_prog_stats {
	uint64_t seen;
	uint64_t redirected;
	uint64_t passed;
	uint64_t dropped;
	uint64_t malformed;
	uint64_t denied; /* dropped for the source ACL */
	uint64_t answered_in_xdp; /* answered from the answer table */
	uint64_t answered_in_xdp_rcode[16]; /* of those, by RCODE */
	uint64_t rate_limited; /* table answers RRL dropped or slipped */
	uint64_t slipped; /* of those, sent truncated */
	uint64_t answered_in_xdp_qtype[16]; /* by query type bucket */
};

/* Loads and attaches the XDP program to cfg->ifname (native mode, generic
 * as a fallback), creates one AF_XDP socket and UMEM per queue and starts
 * one pinned worker per queue.  On failure nothing stays attached and
 * err says why (for a program the verifier rejects: its last lines). */
int xd_engine_xdp_start(struct xd_engine *e, const struct xd_xdp_config *cfg,
			struct xd_xdp_info *info, struct xd_error *err);
/* Stops the workers, closes the sockets, detaches the program (from the
 * dispatcher only while the process still may: see xd_dispatch_remove). */
int xd_engine_xdp_stop(struct xd_engine *e);
/* Takes XDP program prog_id out of libxdp's dispatcher on ifname: what the
 * guard of a server in dispatcher mode does when the server ends.  Needs
 * root (CAP_SYS_ADMIN and write access to the bpffs).  0 also when the
 * program is not there. */
int xd_dispatch_remove(const char *ifname, uint32_t prog_id, struct xd_error *err);
/* Sets what the program does with UDP to `port` (an XD_ACTION_* of
 * bpf/xdpdns_maps.h) on every CPU. */
int xd_engine_xdp_set_port(struct xd_engine *e, uint16_t port, uint32_t action,
			   struct xd_error *err);
/* Reads the action of `port` back from every possible CPU's slot into
 * actions[0..max); returns the number of possible CPUs. */
int xd_engine_xdp_port_actions(struct xd_engine *e, uint16_t port, uint32_t *actions, int max);
/* Takes only packets to this address (family AF_INET or AF_INET6; addr 4
 * or 16 bytes); with none added, every destination is taken. */
int xd_engine_xdp_add_address(struct xd_engine *e, int family, const uint8_t *addr,
			      struct xd_error *err);
int xd_engine_xdp_queue_count(const struct xd_engine *e);
int xd_engine_xdp_queue_stats(const struct xd_engine *e, int queue, struct xd_queue_stats *out);
/* cpu -1: the sum over every CPU.  Returns the number of possible CPUs. */
int xd_engine_xdp_prog_stats(const struct xd_engine *e, int cpu, struct xd_prog_stats *out);
/* The answer table's state (XD_ANSWERS_STATE_OFF when XDP mode is off). */
int xd_engine_xdp_answers_info(struct xd_engine *e, struct xd_answers_info *out);

/* The answer table of an image as the XDP program would get it, for a
 * look inside without XDP mode (`xdpdns answers`, tests): compiled by
 * xd_answers_compile, freed with xd_answers_free. */
struct xd_answers;
int xd_answers_compile(const struct xd_image *img, struct xd_answers **out, struct xd_error *err);
void xd_answers_free(struct xd_answers *t);
void xd_answers_info_get(const struct xd_answers *t, struct xd_answers_info *out);
/* One entry of the table (index from 0 to info.entries - 1). */
struct xd_answers_entry {
	uint8_t name[256]; /* lower-case wire form */
	uint8_t name_len;
	uint16_t qtype; /* 0 with qclass 0: every other type */
	uint16_t qclass;
	uint16_t action; /* XD_ANSWER_SEND or XD_ANSWER_TO_WORKER */
	uint32_t variant; /* 1: the answer to a query with DO=1 */
	uint8_t also_do; /* 1: also the answer with DO=1 */
	uint16_t flags; /* AA and RCODE */
	uint16_t count[3]; /* answer, authority, additional */
	uint16_t csum;
	uint16_t len;
	const uint8_t *sections; /* len bytes after the question */
};
int xd_answers_entry_get(const struct xd_answers *t, uint64_t index, struct xd_answers_entry *out);

/* ---- Source address ACL --------------------------------------------------- */

/* The sources in addr/prefix_len get `action`: XD_ACL_ALLOW or XD_ACL_DENY
 * (enum xd_acl_action of bpf/xdpdns_maps.h).  The longest prefix that
 * holds a source decides; a source no prefix holds gets the default. */
struct xd_acl_rule {
	int family; /* AF_INET or AF_INET6 */
	uint8_t addr[16]; /* IPv4: the first 4 bytes */
	uint8_t prefix_len; /* 0 to 32, or 0 to 128 */
	uint8_t action;
	/* Zone transfer lists only: the TSIG key (its index + 1) that a
	 * request must be signed with for this prefix to hold it; 0: any
	 * request.  Of one prefix, a keyed rule is matched first. */
	uint16_t key;
};

/* What happens to a query from a source: answered, or (denied) REFUSED
 * or dropped.  The last two are also what socket mode is told to do with
 * denied sources; XDP mode always drops them in the XDP program. */
enum {
	XD_VERDICT_ANSWER = 0,
	XD_VERDICT_REFUSE = 1,
	XD_VERDICT_DROP = 2,
};

/* Replaces the ACL: rules[0..n) (a prefix given twice keeps its first
 * rule), default_action (XD_ACL_*) for sources no prefix holds, and
 * socket_verdict (XD_VERDICT_REFUSE or XD_VERDICT_DROP) for denied sources
 * in socket mode.  Socket-mode workers switch with one atomic pointer swap;
 * when XDP mode runs, the program's LPM tries switch in one store too (and
 * xd_engine_xdp_start installs the ACL set before it).  At most
 * XD_ACL_RULES_MAX prefixes per family.  On failure the old ACL stays. */
int xd_engine_acl_set(struct xd_engine *e, const struct xd_acl_rule *rules, int n,
		      uint32_t default_action, int socket_verdict, struct xd_error *err);
/* The XD_VERDICT_* for a query from addr (family AF_INET or AF_INET6; 4 or
 * 16 bytes), as socket mode decides it; -EAFNOSUPPORT for another family.
 * Safe from any thread while workers run (the TCP listener asks here). */
int xd_engine_acl_check(struct xd_engine *e, int family, const uint8_t *addr);
/* The REFUSED response (RCODE 5) to a query: its ID, opcode, RD and CD and
 * its question echoed, and a bare OPT when it had one.  Same contract as
 * xd_answer (0: nothing to send, e.g. to a response). */
int xd_answer_refused(const uint8_t *query, size_t qlen, uint8_t *resp, size_t cap);

/* ---- DNS cookies (RFC 7873, server cookies of RFC 9018) ------------------- */

/* A cookie secret is a SipHash-2-4 key. */
enum {
	XD_COOKIE_SECRET_LEN = 16
};

/* Who sent a query: a server cookie is a hash over the client's address,
 * so the answer depends on it. */
struct xd_client {
	int family; /* AF_INET or AF_INET6; 0: unknown, and
					 * the COOKIE option is ignored */
	uint8_t addr[16]; /* IPv4: the first 4 bytes */
};

/* What a query's COOKIE option showed (RFC 7873 5.2), for the caller: a
 * valid server cookie proves that the client got an earlier response at
 * its address, which is what rate limiting may exempt. */
enum {
	XD_COOKIE_NONE = 0, /* no COOKIE, or cookies off */
	XD_COOKIE_CLIENT_ONLY = 1, /* a client cookie alone */
	XD_COOKIE_INVALID = 2, /* a server cookie not ours for this
					 * client now: wrong secret, address,
					 * version or length, or expired */
	XD_COOKIE_VALID = 3,
	XD_COOKIE_MALFORMED = 4, /* answered FORMERR (RFC 7873 5.2.2) */
};

/* Flags of xd_engine_set_cookie_secrets. */
enum {
	/* A UDP query with a client cookie but no valid server cookie gets
	 * BADCOOKIE and a fresh cookie instead of an answer (RFC 7873
	 * 5.2.3); without it, such a query is answered as usual. */
	XD_COOKIE_REQUIRE_UDP = 1,
};

/* Turns DNS cookies on: every response to a query with a COOKIE option
 * carries the client cookie and a server cookie (RFC 9018: version 1,
 * timestamp, SipHash-2-4 under `current`); a server cookie is valid when
 * it is one of `current` (or of `previous`, 16 bytes or NULL, during a
 * rotation) made for the client within the last hour and at most five
 * minutes ahead.  current NULL (with previous NULL and flags 0) turns
 * cookies off: the option is ignored.  Workers switch with one atomic
 * pointer swap. */
int xd_engine_set_cookie_secrets(struct xd_engine *e, const uint8_t *current,
				 const uint8_t *previous, unsigned flags, struct xd_error *err);

/* xd_engine_answer for a query from `client` (NULL: unknown) at UNIX time
 * `now` (0: the clock's); *cookie (when not NULL) gets the XD_COOKIE_* the
 * query showed. */
int xd_engine_answer_client(struct xd_engine *e, const struct xd_client *client, uint32_t now,
			    const uint8_t *query, size_t qlen, uint8_t *resp, size_t cap,
			    unsigned flags, int *cookie);

/* SipHash-2-4 of data[0..len) under a 16-byte key: 8 bytes into out, in
 * the byte order of the reference implementation (exposed for tests). */
void xd_siphash24(const uint8_t *key, const uint8_t *data, size_t len, uint8_t *out);

/* Whether a worker thread stopped for an error (1, its reason in out; the
 * first one only) or none did (0).  The server must then stop: that
 * worker's socket or queue is answered by nobody. */
int xd_engine_failure(struct xd_engine *e, char *out, size_t cap);

/* ---- Privileges ------------------------------------------------------------ */

/* Switches the whole process to uid and gid (the only group) for good; the
 * calling thread, and threads it starts later, keep the capabilities of
 * the mask keep (bit N: capability N), which the bounding set is cut to;
 * every other thread keeps none.  err says which step failed. */
int xd_privileges_drop(uint32_t uid, uint32_t gid, uint64_t keep, struct xd_error *err);

/* ---- Response rate limiting (RRL) ---------------------------------------- */

/* What happens to one UDP response (xd_rrl_table_check). */
enum {
	XD_RRL_SEND = 0,
	XD_RRL_DROP = 1,
	XD_RRL_SLIP = 2, /* sent truncated: TC=1, the question only */
};

/* The kinds of response that are counted apart (BIND's categories). */
enum {
	XD_RRL_ANSWER = 0, /* NOERROR with answers */
	XD_RRL_NODATA = 1, /* NOERROR, no answer, not a referral */
	XD_RRL_NXDOMAIN = 2,
	XD_RRL_REFERRAL = 3, /* NOERROR, no answer, AA clear, NS in
					 * authority */
	XD_RRL_ERROR = 4, /* any other RCODE */
	XD_RRL_CLASSES = 5,
};

enum {
	XD_RRL_WINDOW_MAX = 3600, /* BIND's limit */
	XD_RRL_SLIP_MAX = 10, /* BIND's limit */
	XD_RRL_TABLE_MAX = 16777216, /* entries of the one table */
};

/* Settings of xd_engine_set_rrl.  A rate is responses per second per
 * bucket, 0 for no limit on that kind; a bucket is one client prefix and
 * one kind of response (and for answers the name and type, for NODATA and
 * NXDOMAIN the zone, for referrals the delegation). */
struct xd_rrl_config {
	uint32_t rate; /* answers */
	uint32_t nxdomain_rate;
	uint32_t errors_rate;
	uint32_t nodata_rate;
	uint32_t referrals_rate;
	uint32_t window; /* seconds the rate is averaged over, 1 to
					 * XD_RRL_WINDOW_MAX */
	uint32_t slip; /* every slip-th limited response goes out
					 * truncated; 0: none, 1: all */
	uint32_t ipv4_prefix; /* client prefix lengths: 0 to 32 */
	uint32_t ipv6_prefix; /* 0 to 128 */
	uint32_t table_size; /* buckets in all, rounded up to a
					 * power of two, at most XD_RRL_TABLE_MAX */
	const struct xd_acl_rule *exempt; /* sources never limited (the
						 * rules' action is ignored) */
	int nexempt;
};

/* A bucket that has just started to be limited (at most one per bucket
 * per window), for the log. */
struct xd_rrl_event {
	int family; /* AF_INET or AF_INET6 */
	uint8_t addr[16]; /* the client prefix, host bits clear */
	uint8_t prefix_len;
	int kind; /* XD_RRL_ANSWER... */
	uint32_t time; /* UNIX seconds */
};

/* Turns rate limiting of UDP responses (socket-mode and AF_XDP workers,
 * and the XDP program's own answers; never TCP) on with cfg, or off with
 * NULL.  They all count in one table of buckets, so a client has one rate
 * wherever its queries land; it is made anew when the settings change.
 * Responses to queries with a valid server cookie are never limited.
 * Workers switch with one atomic pointer swap. */
int xd_engine_set_rrl(struct xd_engine *e, const struct xd_rrl_config *cfg, struct xd_error *err);
/* Takes up to max events from the workers' rings into out; returns how
 * many.  One caller at a time; not while workers start or stop. */
int xd_engine_rrl_events(struct xd_engine *e, struct xd_rrl_event *out, int max);

/* A limiter of its own, with the workers' logic, for tests and
 * benchmarks: the time is passed in. */
struct xd_rrl_table;
int xd_rrl_table_new(const struct xd_rrl_config *cfg, struct xd_rrl_table **out,
		     struct xd_error *err);
void xd_rrl_table_free(struct xd_rrl_table *t);
/* The XD_RRL_SEND/DROP/SLIP of response resp[0..len) to client at `now`
 * (UNIX seconds); cookie is the XD_COOKIE_* its query showed. */
int xd_rrl_table_check(struct xd_rrl_table *t, const struct xd_client *client, const uint8_t *resp,
		       size_t len, int cookie, uint32_t now);
/* Answers query[0..qlen) from img into resp as a UDP worker does for a
 * client at `now` (the answering core, then the limiter with the kind of
 * response the core noted, not read back): the response's length, the
 * length of its truncated form when it slips, 0 when it is dropped. */
int xd_rrl_table_answer(struct xd_rrl_table *t, const struct xd_image *img,
			const struct xd_client *client, uint32_t now, const uint8_t *query,
			size_t qlen, uint8_t *resp, size_t cap);
/* Takes up to max events of the table's ring. */
int xd_rrl_table_events(struct xd_rrl_table *t, struct xd_rrl_event *out, int max);
/* The XD_RRL_ANSWER... of a response; -EINVAL when it is not one. */
int xd_rrl_classify(const uint8_t *resp, size_t len);
/* Rewrites a response in place into its truncated form (TC=1, the
 * question only); returns the new length, or -EINVAL. */
int xd_rrl_slip(uint8_t *resp, size_t len);

#endif
