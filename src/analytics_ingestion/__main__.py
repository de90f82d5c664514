import sys

from analytics_ingestion.cli import main

sys.exit(main())
