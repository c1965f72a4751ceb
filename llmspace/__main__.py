import sys

from llmspace.cli import main

sys.exit(main())
