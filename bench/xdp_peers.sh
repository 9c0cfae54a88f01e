#!/bin/bash
# The XDP path on a veth pair, one queue, measured side by side: xdpdns in
# XDP mode, Knot DNS in XDP mode, an XDP_TX reflector (bench/reflector.bpf.c:
# the ceiling of the path), and xdpdns in socket mode.  "Strict" steering:
# each veth's NAPI is threaded and pinned to its own side's CPU (server and
# its NAPI on CPU 0, kxdpgun and its NAPI on CPU 1), so every cycle the
# server causes is charged to the server.  kxdpgun offers a fixed rate for a
# bounded time; the figure is answers per second, REPEATS runs per server
# and rate, servers alternating, and the median.
#
#   bench/xdp_peers.sh [RATE...]     (root; default rates 200k 250k 300k)
#   env: SECONDS_ (default 5) per run, REPEATS (default 3), SERVERS
#        (default "xdpdns knot reflector socket"; also xdpdns_nobusy: XDP mode
#        with [xdp] busy_poll = false)
#
# Network namespaces xdvk-s / xdvk-c and the veth xdvk0 / xdvk1 are created
# and deleted by name; traffic stays inside them (198.18.7.0/24).
set -u
cd "$(dirname "$(readlink -f "$0")")/.."
. bench/knot_xdp_conf.sh
RATES=("$@"); [ ${#RATES[@]} -eq 0 ] && RATES=(200000 250000 300000)
SECONDS_=${SECONDS_:-5}
REPEATS=${REPEATS:-3}
SERVERS=${SERVERS:-xdpdns knot reflector socket}
WORK=$(mktemp -d /tmp/xdvk.XXXXXX)
ZONE=$PWD/zones/example.com.zone

teardown() { ip netns del xdvk-s 2>/dev/null; ip netns del xdvk-c 2>/dev/null; true; }
setup() {
	teardown
	ip netns add xdvk-s && ip netns add xdvk-c
	ip link add xdvk0 numrxqueues 1 numtxqueues 1 type veth peer name xdvk1 numrxqueues 1 numtxqueues 1
	ip link set xdvk0 netns xdvk-s && ip link set xdvk1 netns xdvk-c
	ip -n xdvk-s addr add 198.18.7.1/24 dev xdvk0 && ip -n xdvk-c addr add 198.18.7.2/24 dev xdvk1
	for ns in xdvk-s xdvk-c; do ip -n $ns link set lo up; done
	ip -n xdvk-s link set xdvk0 up && ip -n xdvk-c link set xdvk1 up
}
# Threaded NAPI exists only once XDP is attached to that veth.
pin_napi() { # NS IF CPU
	ip netns exec "$1" sh -c "echo 1 > /sys/class/net/$2/threaded" 2>/dev/null
	for p in $(pgrep -f "napi/$2-"); do taskset -p -c "$3" "$p" >/dev/null; done
}
# Busy and total jiffies of CPU 0, where everything the server causes runs.
cpu0() { awk '/^cpu0 / { t = 0; for (i = 2; i <= NF; i++) t += $i; print t - $5 - $6, t }' /proc/stat; }
load() { # RATE -> prints "answers/s server-CPU-microseconds-per-answer"
	local before after replies
	(sleep 1; pin_napi xdvk-c xdvk1 1) &
	before=$(cpu0)
	replies=$(ip netns exec xdvk-c taskset -c 1 timeout $((SECONDS_ + 10)) \
		kxdpgun -t "$SECONDS_" -Q "$1" -i "$WORK/queries" -F 1 198.18.7.1 2>&1 |
		awk '/total replies/ { gsub(/[()]/, ""); print $3, $4 }')
	after=$(cpu0)
	wait
	# CPU 0's busy time over the run, per answer (1 jiffy = 10 ms here).
	awk -v b="$before" -v a="$after" -v r="$replies" -v hz="$(getconf CLK_TCK)" 'BEGIN {
		split(b, B); split(a, A); split(r, R)
		us = R[1] > 0 ? (A[1] - B[1]) / hz * 1e6 / R[1] : 0
		printf "%d %.2f\n", R[2], us }'
}
start_xdpdns() {
	ip netns exec xdvk-s taskset -c 0 .venv/bin/xdpdns serve --xdp xdvk0 \
		--listen 198.18.7.1:53 --zone "$ZONE" --udp-workers 1 \
		--control-socket "$WORK/ctl" >"$WORK/xdpdns.log" 2>&1 &
	echo $!
}
# XDP mode with the queue worker sleeping in poll instead of busy polling.
start_xdpdns_nobusy() {
	printf '[xdp]\nbusy_poll = false\n' >"$WORK/nobusy.toml"
	ip netns exec xdvk-s taskset -c 0 .venv/bin/xdpdns serve --config "$WORK/nobusy.toml" \
		--xdp xdvk0 --listen 198.18.7.1:53 --zone "$ZONE" --udp-workers 1 \
		--control-socket "$WORK/ctl" >"$WORK/xdpdns.log" 2>&1 &
	echo $!
}
start_socket() {
	ip netns exec xdvk-s taskset -c 0 .venv/bin/xdpdns serve \
		--listen 198.18.7.1:53 --zone "$ZONE" --udp-workers 1 \
		--control-socket "$WORK/ctl" >"$WORK/socket.log" 2>&1 &
	echo $!
}
# The reflector has no process: the program itself answers.
start_reflector() {
	ip -n xdvk-s link set dev xdvk0 xdpdrv obj "$WORK/reflector.o" sec xdp || exit 1
	echo 0
}
start_knot() {
	knot_xdp_conf "$WORK" 198.18.7.1 xdvk0 "1" "$ZONE" >"$WORK/knot.conf"
	ip netns exec xdvk-s taskset -c 0 knotd -c "$WORK/knot.conf" >"$WORK/knot.log" 2>&1 &
	echo $!
}
run() { # NAME RATE -> answers/s
	local pid answered
	setup
	pid=$(start_"$1")
	for _ in $(seq 50); do
		ip netns exec xdvk-c timeout 1 kdig @198.18.7.1 example.com SOA +short +retry=0 \
			+time=1 >/dev/null 2>&1 && break
		sleep 0.1
	done
	# knotd sets its own threads' affinity: re-pin every thread.
	[ "$pid" -gt 0 ] && for t in /proc/$pid/task/*; do taskset -p -c 0 "${t##*/}" >/dev/null 2>&1; done
	# Socket mode has no XDP on the server veth, hence no NAPI to thread.
	pin_napi xdvk-s xdvk0 0
	answered=$(load "$2")
	[ "$pid" -gt 0 ] && { kill "$pid"; wait "$pid" 2>/dev/null; }
	ip -n xdvk-s link set xdvk0 xdp off 2>/dev/null	# knotd leaves its program
	teardown
	echo "${answered:-0 0}"
}
median() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

trap 'teardown; rm -rf "$WORK"' EXIT
printf 'www.example.com A\nexample.com MX\nnx.example.com A\nfoo.apps.example.com TXT\n' >"$WORK/queries"
clang -O2 -g -target bpf -I"/usr/include/$(gcc -dumpmachine)" -c bench/reflector.bpf.c \
	-o "$WORK/reflector.o" || exit 1
printf '%-10s %9s %s\n' server offered/s \
	"answered/s per run -> median (share of offered); CPU 0 us per answer, median"
for rate in "${RATES[@]}"; do
	declare -A runs=() cpu=()
	for _ in $(seq "$REPEATS"); do
		for server in $SERVERS; do
			read -r ans us <<<"$(run "$server" "$rate")"
			runs[$server]+="$ans "
			cpu[$server]+="$us "
		done
	done
	for server in $SERVERS; do
		med=$(tr ' ' '\n' <<<"${runs[$server]}" | grep . | median)
		us=$(tr ' ' '\n' <<<"${cpu[$server]}" | grep . | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }')
		printf '%-10s %9s %s-> %s (%s%%); %s us\n' "$server" "$rate" "${runs[$server]}" "$med" \
			"$((med * 100 / rate))" "$us"
	done
	unset runs cpu
done
