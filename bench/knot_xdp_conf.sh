# Sourced by bench/xdp_peers.sh and bench/xdp_scaling.sh: the knotd
# configuration both measure Knot DNS's XDP mode with.
#
#   knot_xdp_conf WORKDIR ADDRESS IFACE UDP_WORKERS ZONE_FILE > knot.conf
#
# route-check off: Knot needs it on a veth (see DESIGN.md's facts about peers).
knot_xdp_conf() {
	cat <<-CONF
	server:
	    rundir: $1
	    user: root:root
	    listen: $2@53
	    udp-workers: $4
	    tcp-workers: 1
	    background-workers: 1
	xdp:
	    listen: $3@53
	    route-check: off
	database:
	    storage: $1
	zone:
	  - domain: example.com
	    file: $5
	CONF
}
