"""How many requests one unknown history item used to fail: the share of a newer snapshot's test
users whose history holds an item that a model trained on an older snapshot does not know.

    .venv/bin/python benchmarks/unknown_items.py OLD_PREPARED NEW_PREPARED [--max-len 50]

OLD_PREPARED and NEW_PREPARED are prepared-data folders (the data stage's output) of the two
snapshots. Prints ``padirec.serving.unknown_item_share`` as JSON: ``with_unknown`` requests failed
with a 400 before unknown items were dropped; ``all_unknown`` are still refused (docs/serving.md).
"""

from __future__ import annotations

import argparse
import json

from padirec.serving import unknown_item_share


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model_data", help="prepared folder the served model was trained on")
    ap.add_argument("new_data", help="prepared folder of the newer snapshot")
    ap.add_argument("--max-len", type=int, help="the history a client sends: the model's maximum length")
    args = ap.parse_args()
    print(json.dumps(unknown_item_share(args.model_data, args.new_data, args.max_len), indent=2))


if __name__ == "__main__":
    main()
