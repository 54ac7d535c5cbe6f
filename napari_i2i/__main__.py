import sys

from napari_i2i.frontends.cli import main

sys.exit(main())
