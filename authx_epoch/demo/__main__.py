"""``python -m authx_epoch.demo``: run the demo (``--help`` for its options)."""

from authx_epoch.demo.server import main

main()
