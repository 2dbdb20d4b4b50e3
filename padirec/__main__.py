from padirec.commands.cli import main

raise SystemExit(main())
