"""Make the shipped sample: every row of a seeded 20% of UCI Online Retail's customers (plus 20%
of guest invoices), byte-for-byte as in the source file, gzipped. Usage:

    python scripts/make_sample.py ../shared/data/online_retail_uci/online_retail.csv.gz \
        examples/online_retail_sample.csv.gz
"""

from __future__ import annotations

import gzip
import hashlib
import sys

SHARE = 0.2


def keep(key: str) -> bool:
    # A hash of the key, not a random draw: the same customers whatever the file's order.
    return int(hashlib.sha256(key.encode()).hexdigest()[:8], 16) < SHARE * 0xFFFFFFFF


def main(source: str, target: str) -> None:
    kept = 0
    with (
        gzip.open(source, "rt", encoding="utf-8", newline="") as src,
        gzip.open(target, "wt", encoding="utf-8", newline="", compresslevel=9) as dst,
    ):
        header = src.readline()
        dst.write(header)
        for line in src:
            fields = line.rstrip("\r\n").split(",")
            # CustomerID and InvoiceNo are the last-but-one and first fields; descriptions may
            # hold commas inside quotes, so count from the end for the customer.
            customer, invoice = fields[-2], fields[0]
            if keep(customer if customer else "guest:" + invoice):
                dst.write(line)
                kept += 1
    print(f"{kept:,} rows written to {target}")


if __name__ == "__main__":
    main(*sys.argv[1:3])
