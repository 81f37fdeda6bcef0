"""``python -m wide_lightning.atlas --checkpoint ...``"""

from wide_lightning.atlas.command import main

if __name__ == "__main__":
    main()
