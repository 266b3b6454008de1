import sys

from sb3_ddpg_ext.cli import main

sys.exit(main())
