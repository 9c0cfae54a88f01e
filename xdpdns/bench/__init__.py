"""`xdpdns bench`: xdpdns measured in a topology it builds itself, side by
side with its peers, with a report to look at.

| module | its one job |
|---|---|
| options.py | the command line, checked into a frozen BenchOptions |
| zones.py | which zone files every server of a run serves |
| queries.py | query files: generated from the zones with a mix and seed, or the user's |
| topology.py | the server and client namespaces, the veth pair, steering, teardown |
| servers.py | how xdpdns, Knot, NSD and BIND are configured |
| process.py | one server process: started pinned, waited for, asked, stopped by PID |
| generators.py | dnsperf, kxdpgun and xdpdns's generator: run bounded, output parsed |
| xdpgen.py | xdpdns's AF_XDP generator as a process (`python -m xdpdns.bench.xdpgen`) |
| procfs.py | what /proc says: CPU time, memory, process trees, the machine |
| run.py | one measured run in a fresh topology, and its record |
| soak.py | a long run's samples of memory and answer rate, and their drift |
| signals.py | SIGTERM and Ctrl-C as an exception; clean-ups that cannot be cut short |
| report.py | progress lines, the table, the JSON document, the chart |
| runner.py | the whole benchmark: checks, query file, the runs in order, the output |

The scripts in bench/ use the same modules.
"""
