"""``python -m authx_epoch``: the same command line as the ``authx-epoch`` console script."""

from authx_epoch.cli import main

if __name__ == "__main__":
    main()
