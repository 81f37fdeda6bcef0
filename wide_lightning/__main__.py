"""``python -m wide_lightning fit --config configs/...``"""

from wide_lightning.cli import main

if __name__ == "__main__":
    main()
