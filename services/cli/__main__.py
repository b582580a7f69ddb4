import sys

from duet.services.cli.main import main

sys.exit(main())
