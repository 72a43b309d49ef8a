"""``python -m inspector``; also the entry point of the bundle (packaging/memorization-inspector.spec)."""

import multiprocessing

if __name__ == "__main__":
    # In the frozen bundle, the index builder's decoding processes (spawn) start this executable again;
    # freeze_support() turns those starts into workers instead of a second app. A no-op everywhere else.
    multiprocessing.freeze_support()

    from inspector.cli import main

    raise SystemExit(main())
