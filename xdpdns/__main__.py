from xdpdns.cli import main

raise SystemExit(main())
