import sys

if sys.argv[1:2] == ["supervise"]:
    # The long-lived supervisor: a lean entry that does not import the CLI (see supervisor/entry.py).
    from .supervisor.entry import main
else:
    from .cli import main

sys.exit(main())
