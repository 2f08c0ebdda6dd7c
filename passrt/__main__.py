import sys

from passrt.cli.main import main

sys.exit(main())
