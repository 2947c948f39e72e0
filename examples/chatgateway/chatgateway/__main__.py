import sys

from chatgateway.cli import main

sys.exit(main())
