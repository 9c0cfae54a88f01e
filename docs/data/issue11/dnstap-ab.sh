#!/bin/bash
# interleaved A/B: dnstap off, sample=100, sample=1; socket mode, 2 workers, dnsperf 5 s
cd /tmp/dtb
rm -f tap.sock
fstrm_capture -t protobuf:dnstap.Dnstap -u /tmp/dtb/tap.sock -w /dev/null 2>/dev/null &
CAP=$!
sleep 0.5
for round in 1 2 3; do
 for cfg in off s100 s1; do
  printf '[server]\nlisten=["127.0.0.1:5398"]\nudp_workers=2\nstats_interval=0\n' > ab.toml
  [ $cfg = s100 ] && printf '[dnstap]\nsocket = "/tmp/dtb/tap.sock"\nsample = 100\n' >> ab.toml
  [ $cfg = s1 ] && printf '[dnstap]\nsocket = "/tmp/dtb/tap.sock"\nsample = 1\n' >> ab.toml
  /work/main/.venv/bin/xdpdns serve --config ab.toml --zone /work/main/zones/example.com.zone --control-socket /tmp/dtb/c.sock > ab-srv.log 2>&1 &
  SRV=$!
  sleep 2.5
  qps=$(dnsperf -s 127.0.0.1 -p 5398 -d q.txt -l 5 -c 4 -q 200 2>&1 | awk '/Queries per second/ {print int($4)}')
  kill $SRV; wait $SRV
  lost=$(grep stopped ab-srv.log | tr ' ' '\n' | grep dnstap_lost_full | cut -d= -f2)
  echo "$round $cfg $qps lost_full=${lost:-}"
 done
done
kill -INT $CAP
