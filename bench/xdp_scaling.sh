#!/bin/bash
# How XDP mode scales with queues: xdpdns on a veth pair with N queues and N
# pinned workers, loaded by xdpdns's own AF_XDP generator on as many client
# queues (kxdpgun sends on one queue of a veth), and an XDP_TX reflector
# (bench/reflector.bpf.c: the ceiling of the path) under the same load.
# Strict steering: each veth's NAPI is threaded and its queue i's thread
# pinned beside that side's queue i (server on CPUs 0..N-1, client on
# SPLIT..SPLIT+N-1), so every cycle the server causes is charged to the
# server's CPUs.  SERVERS may also name knot (Knot DNS in XDP mode) and
# socket (xdpdns in socket mode with N UDP workers).  Each server runs once per queue count and is loaded at a
# ladder of rates; the figures are the most answers per second over the
# ladder and the highest offered rate answered with at most 1 % loss
# (medians of REPEATS runs), the server CPUs' busy share and their CPU time
# per answer.
#
#   bench/xdp_scaling.sh [N...]        (root; default 1 2 4 8)
#   env: SECONDS_ (default 3) per run, REPEATS (2), RATES (offered queries/s
#        per queue, 0 = as fast as the generator goes; default
#        "250000 400000 550000 700000 0"), SPLIT (first
#        client CPU, default half the CPUs), SERVERS ("xdpdns reflector"),
#        PYTHON (default .venv/bin/python), JSON (file for every run)
#
# Namespaces xdsc-s / xdsc-c and the veth xdsc0 / xdsc1 are created and
# deleted by name; traffic stays inside them (198.18.10.0/24).
set -u
cd "$(dirname "$(readlink -f "$0")")/.."
. bench/knot_xdp_conf.sh
QUEUES=("$@"); [ ${#QUEUES[@]} -eq 0 ] && QUEUES=(1 2 4 8)
SECONDS_=${SECONDS_:-3}
REPEATS=${REPEATS:-2}
RATES=${RATES:-250000 400000 550000 700000 0}
SPLIT=${SPLIT:-$(($(nproc) / 2))}
SERVERS=${SERVERS:-xdpdns reflector}
PYTHON=${PYTHON:-.venv/bin/python}
JSON=${JSON:-}
WORK=$(mktemp -d /tmp/xdsc.XXXXXX)
ZONE=$PWD/zones/example.com.zone
REFLECTOR=${REFLECTOR:-$WORK/reflector.o}

teardown() { ip netns del xdsc-s 2>/dev/null; ip netns del xdsc-c 2>/dev/null; true; }
setup() { # N
	teardown
	ip netns add xdsc-s && ip netns add xdsc-c
	ip link add xdsc0 numrxqueues "$1" numtxqueues "$1" type veth \
		peer name xdsc1 numrxqueues "$1" numtxqueues "$1"
	ip link set xdsc0 netns xdsc-s && ip link set xdsc1 netns xdsc-c
	# Every queue active (a veth may start with fewer than it has).
	ip netns exec xdsc-s ethtool -L xdsc0 rx "$1" tx "$1" 2>/dev/null
	ip netns exec xdsc-c ethtool -L xdsc1 rx "$1" tx "$1" 2>/dev/null
	ip -n xdsc-s addr add 198.18.10.1/24 dev xdsc0 && ip -n xdsc-c addr add 198.18.10.2/24 dev xdsc1
	for ns in xdsc-s xdsc-c; do ip -n $ns link set lo up; done
	ip -n xdsc-s link set xdsc0 up && ip -n xdsc-c link set xdsc1 up
}
mac() { ip -n "$1" -o link show "$2" | sed -n 's/.*link\/ether \([0-9a-f:]*\).*/\1/p'; }
# Threaded NAPI exists only once XDP is attached to that veth; queue i's
# thread (napi/IF-ID, IDs in queue order) goes to CPU FIRST+i.
pin_napi() { # NS IF FIRST
	local i=0 p
	ip netns exec "$1" sh -c "echo 1 > /sys/class/net/$2/threaded" 2>/dev/null
	for p in $(grep -l "^napi/$2-" /proc/[0-9]*/comm 2>/dev/null | cut -d/ -f3 | sort -n); do
		taskset -p -c $(($3 + i)) "$p" >/dev/null
		i=$((i + 1))
	done
}
# Busy and total jiffies summed over CPUs FIRST..FIRST+N-1.
cpus_busy() { # FIRST N
	awk -v lo="$1" -v n="$2" '/^cpu[0-9]+ / { c = substr($1, 4) + 0
		if (c < lo || c >= lo + n) next
		t = 0; for (i = 2; i <= NF; i++) t += $i; busy += t - $5 - $6; all += t }
		END { print busy, all }' /proc/stat
}
start_xdpdns() { # N
	ip netns exec xdsc-s taskset -c "0-$(($1 - 1))" "$PYTHON" -m xdpdns serve --xdp xdsc0 \
		--listen 198.18.10.1:53 --zone "$ZONE" --udp-workers 1 \
		--control-socket "$WORK/ctl" >"$WORK/xdpdns.log" 2>&1 &
	echo $!
	for _ in $(seq 100); do [ -S "$WORK/ctl" ] && break; sleep 0.1; done
}
# Socket mode: N UDP workers; no XDP on the server's veth, so its receive
# work runs on the sender's CPUs (this flatters it).
start_socket() { # N
	ip netns exec xdsc-s taskset -c "0-$(($1 - 1))" "$PYTHON" -m xdpdns serve \
		--listen 198.18.10.1:53 --zone "$ZONE" --udp-workers "$1" \
		--control-socket "$WORK/ctl" >"$WORK/socket.log" 2>&1 &
	echo $!
	for _ in $(seq 100); do [ -S "$WORK/ctl" ] && break; sleep 0.1; done
}
# Knot DNS in XDP mode (it takes one queue of a veth: it counts combined
# channels only), every thread re-pinned to the server's CPUs.
start_knot() { # N
	local pid t
	knot_xdp_conf "$WORK" 198.18.10.1 xdsc0 "$1" "$ZONE" >"$WORK/knot.conf"
	ip netns exec xdsc-s taskset -c "0-$(($1 - 1))" knotd -c "$WORK/knot.conf" >"$WORK/knot.log" 2>&1 &
	pid=$!
	echo $pid
	for _ in $(seq 50); do ip -n xdsc-s link show xdsc0 | grep -q xdp && break; sleep 0.1; done
	sleep 0.5
	for t in /proc/$pid/task/*; do taskset -p -c "0-$(($1 - 1))" "${t##*/}" >/dev/null 2>&1; done
}
start_reflector() {
	ip -n xdsc-s link set dev xdsc0 xdpdrv obj "$REFLECTOR" sec xdp || exit 1
	echo 0
}
# The generator in the client namespace; prints one JSON line.
generate() { # N SERVER_MAC CLIENT_MAC
	ip netns exec xdsc-c taskset -c "$SPLIT-$((SPLIT + $1 - 1))" "$PYTHON" - "$@" <<-'PY'
	import json, sys
	import dns.message
	from xdpdns.engine import LoadGenerator
	import os
	n, smac, cmac = int(sys.argv[1]), sys.argv[2], sys.argv[3]
	split, rate, secs = int(os.environ["SPLIT"]), int(os.environ["RATE"]), float(os.environ["SECONDS_"])
	queries = [dns.message.make_query(name, rtype).to_wire() for name, rtype in
	           [("www.example.com", "A"), ("example.com", "MX"), ("nx.example.com", "A"),
	            ("foo.apps.example.com", "TXT")]]
	mac = lambda s: bytes.fromhex(s.replace(":", ""))
	with LoadGenerator(interface="xdsc1", queries=queries, src_mac=mac(cmac), dst_mac=mac(smac),
	                   src_addr="198.18.10.2", dst_addr="198.18.10.1", rate=rate,
	                   duration=secs, drain=0.3, cpus=list(range(split, split + n))) as g:
	    g.wait()
	    qs = g.queue_stats()
	lat = [sum(b) for b in zip(*(q.latency for q in qs))]
	def pct(p):
	    total, seen = sum(lat), 0
	    for i, c in enumerate(lat):
	        seen += c
	        if total and seen >= p * total:
	            return 2 ** (i + 1)
	    return 0
	print(json.dumps({"sent": sum(q.sent for q in qs), "answered": sum(q.answered for q in qs),
	                  "per_queue": [q.answered for q in qs], "noerror": sum(q.rcodes[0] for q in qs),
	                  "p50_us_below": pct(0.5), "p99_us_below": pct(0.99)}))
	PY
}
# One load at RATE (over all queues) against the running server; prints
# one JSON line.
probe() { # SERVER N RATE
	local result before after smac cmac
	smac=$(mac xdsc-s xdsc0)
	cmac=$(mac xdsc-c xdsc1)
	# The generator attaches its program when it starts: pin after that.
	(for _ in $(seq 50); do ip -n xdsc-c link show xdsc1 | grep -q prog/xdp && break; sleep 0.1; done
	 pin_napi xdsc-c xdsc1 "$SPLIT") &
	before=$(cpus_busy 0 "$2")
	result=$(SPLIT=$SPLIT RATE=$3 SECONDS_=$SECONDS_ generate "$2" "$smac" "$cmac")
	after=$(cpus_busy 0 "$2")
	wait
	"$PYTHON" - "$1" "$2" "$3" "$before" "$after" "$(getconf CLK_TCK)" "$SECONDS_" "${result:-{\}}" <<-'PY'
	import json, sys
	server, n, rate, before, after, hz, secs, result = sys.argv[1:]
	r = json.loads(result) or {"answered": 0, "sent": 0}
	(b0, t0), (b1, t1) = before.split(), after.split()
	busy = (int(b1) - int(b0)) / int(hz)
	r.update(server=server, queues=int(n), rate=int(rate),
	         sent_per_s=round(r["sent"] / float(secs)),
	         answered_per_s=round(r["answered"] / float(secs)),
	         loss=round(1 - r["answered"] / r["sent"], 4) if r["sent"] else None,
	         server_cpu_busy=round((int(b1) - int(b0)) / max(1, int(t1) - int(t0)), 3),
	         server_cpu_us_per_answer=round(busy * 1e6 / r["answered"], 2) if r["answered"] else None)
	print(json.dumps(r))
	PY
}
# A server on N queues, loaded at each rate of RATES (per queue) in turn.
serve_and_probe() { # SERVER N
	local pid rate line
	setup "$2"
	pid=$(start_"$1" "$2")
	pin_napi xdsc-s xdsc0 0
	for rate in $RATES; do
		for _ in $(seq "$REPEATS"); do
			line=$(probe "$1" "$2" $((rate * $2)))
			echo "$line"
			echo "$line" >>"$WORK/runs.jsonl"
		done
	done
	[ "$pid" -gt 0 ] && { kill "$pid"; wait "$pid" 2>/dev/null; }
	ip -n xdsc-s link set xdsc0 xdp off 2>/dev/null	# knotd leaves its program
	teardown
}

trap 'teardown; rm -rf "$WORK"' EXIT
if [[ " $SERVERS " == *" reflector "* && ! -e "$REFLECTOR" ]]; then
	clang -O2 -g -target bpf -I"/usr/include/$(gcc -dumpmachine)" -c bench/reflector.bpf.c \
		-o "$REFLECTOR" || exit 1
fi
echo "machine: $(nproc) CPUs, $(uname -r), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2-)"
echo "server CPUs 0..N-1, client CPUs $SPLIT..; rates per queue: $RATES (0 = unlimited); ${SECONDS_}s x $REPEATS"
for server in $SERVERS; do
	for n in "${QUEUES[@]}"; do
		serve_and_probe "$server" "$n"
	done
done
[ -n "$JSON" ] && cp "$WORK/runs.jsonl" "$JSON"
# Medians per server and queue count.
"$PYTHON" - "$WORK/runs.jsonl" <<-'PY'
import json, statistics, sys
runs = [json.loads(line) for line in open(sys.argv[1])]
print(f"{'server':10} {'queues':>6} {'best answered/s':>16} {'at rate':>9} {'clean rate':>10}"
      f" {'per queue (best)':>34} {'busy':>5} {'us/answer':>9}")
for server, n in sorted({(r["server"], r["queues"]) for r in runs}):
    by_rate = {}
    for r in runs:
        if (r["server"], r["queues"]) == (server, n):
            by_rate.setdefault(r["rate"], []).append(r)
    med = {rate: statistics.median(x["answered_per_s"] for x in rs) for rate, rs in by_rate.items()}
    best = max(med, key=med.get)
    clean = [rate for rate, rs in by_rate.items() if rate and
             statistics.median(x["loss"] if x["loss"] is not None else 1 for x in rs) <= 0.01]
    top = max(by_rate[best], key=lambda x: x["answered_per_s"])
    us = [x["server_cpu_us_per_answer"] for x in by_rate[best] if x["server_cpu_us_per_answer"]]
    print(f"{server:10} {n:>6} {med[best]:>16,.0f} {best or 'max':>9} {max(clean) if clean else 0:>10}"
          f" {str(top.get('per_queue', [])):>34} {statistics.median(x['server_cpu_busy'] for x in by_rate[best]):>5.2f}"
          f" {statistics.median(us) if us else 0:>9.2f}")
PY
