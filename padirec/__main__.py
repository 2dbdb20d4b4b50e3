from padirec.cli import main

raise SystemExit(main())
