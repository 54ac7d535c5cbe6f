import sys

from napari_i2i.cli import main

sys.exit(main())
