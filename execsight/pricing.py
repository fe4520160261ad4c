"""Prices for cost attribution (tune) and waste estimates (sweep).

A shipped table of AWS on-demand list prices lives next to this module
(``aws_prices.yaml``: Linux, shared tenancy, USD) for the common families
(m5/m6i/m7i/c5/c6i/c7i/r5/r6i/r7i/t3/g4dn/g5/p3/p4d) in us-east-1, us-west-2,
eu-west-1 and eu-central-1, plus EBS per GB-month, snapshot per GB-month,
public IPv4 / Elastic IP, load balancer and NAT gateway hourly prices.
``EXECSIGHT_PRICES_FILE`` (settings.prices_file) names an override file of the
same shape; its entries replace the shipped ones. Hosts without a known
instance type are priced at ``settings.onprem_hourly_usd``.

API (all lookups return ``None`` when the table has no price; nothing raises for
an unknown type or region):

- ``hourly_price(instance_type, region, table=None) -> float | None`` — USD/hour.
- ``host_rate(instance_type, region, onprem_hourly_usd, table=None) -> HostRate``
  — always a rate, with its ``source`` (``aws:<region>``, ``aws:us-east-1 (region
  fallback)`` when only the region is missing from the table, ``onprem``).
- ``ebs_gb_month_price(volume_type, region)``, ``ebs_monthly_cost(volume_type,
  size_gb, region)``, ``snapshot_gb_month_price(region)``,
  ``elastic_ip_hourly_price(region)``, ``load_balancer_hourly_price(region)``,
  ``nat_gateway_hourly_price(region)`` — USD; monthly means ``HOURS_PER_MONTH``
  (730) hours.
- ``price_table(settings=None) -> PriceTable`` — the shipped table merged with
  the override file (cached per override path); ``load_price_table(path,
  override)`` reads explicitly.
- ``refresh_price_table(regions, instance_types=None, client=None)`` — queries
  the AWS Pricing API (boto3 ``pricing``, read-only ``GetProducts``) for
  instance and EBS prices and returns a table to ``dump_price_table(...)``;
  ``aws_credentials_available()`` says whether boto3 finds credentials.
- ``normalize_region("us-east-1a") == "us-east-1"`` (availability zones accepted).

CLI: ``python -m execsight.pricing show m5.large us-east-1`` and
``python -m execsight.pricing refresh --region us-east-1 --out prices.yaml``.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from execsight.settings import Settings

SHIPPED_PRICES = Path(__file__).resolve().parent / "aws_prices.yaml"
HOURS_PER_MONTH = 730.0
FALLBACK_REGION = "us-east-1"

_AZ = re.compile(r"^([a-z]{2}(?:-gov)?-[a-z]+-\d+)[a-z]$")


class PriceTableError(ValueError):
    """A price file is malformed; the message names the file and the entry."""


@dataclass(frozen=True)
class RegionPrices:
    instances: dict[str, float] = field(default_factory=dict)
    ebs_gb_month: dict[str, float] = field(default_factory=dict)
    ebs_snapshot_gb_month: float | None = None
    elastic_ip_hourly: float | None = None
    load_balancer_hourly: float | None = None
    nat_gateway_hourly: float | None = None

    def merged(self, other: RegionPrices) -> RegionPrices:
        """This region's prices with ``other``'s entries taking precedence."""
        return RegionPrices(
            instances={**self.instances, **other.instances},
            ebs_gb_month={**self.ebs_gb_month, **other.ebs_gb_month},
            ebs_snapshot_gb_month=_first(other.ebs_snapshot_gb_month, self.ebs_snapshot_gb_month),
            elastic_ip_hourly=_first(other.elastic_ip_hourly, self.elastic_ip_hourly),
            load_balancer_hourly=_first(other.load_balancer_hourly, self.load_balancer_hourly),
            nat_gateway_hourly=_first(other.nat_gateway_hourly, self.nat_gateway_hourly),
        )


def _first(*values: float | None) -> float | None:
    for v in values:
        if v is not None:
            return v
    return None


@dataclass(frozen=True)
class PriceTable:
    regions: dict[str, RegionPrices]
    as_of: str = ""
    source: str = "shipped"

    def region(self, region: str | None) -> RegionPrices | None:
        if not region:
            return None
        return self.regions.get(normalize_region(region))

    def merged(self, other: PriceTable) -> PriceTable:
        regions = dict(self.regions)
        for name, prices in other.regions.items():
            regions[name] = regions[name].merged(prices) if name in regions else prices
        return PriceTable(regions=regions, as_of=other.as_of or self.as_of, source=f"{self.source}+{other.source}")


@dataclass(frozen=True)
class HostRate:
    hourly_usd: float
    source: str


def normalize_region(region: str) -> str:
    r = region.strip().lower()
    m = _AZ.match(r)
    return m.group(1) if m else r


def _num(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise PriceTableError(f"{where}: expected a number, got {value!r}")
    try:
        out = float(value)
    except ValueError:
        raise PriceTableError(f"{where}: expected a number, got {value!r}") from None
    if out < 0:
        raise PriceTableError(f"{where}: negative price {out}")
    return out


def _opt_num(doc: Mapping[str, Any], key: str, where: str) -> float | None:
    return None if doc.get(key) is None else _num(doc[key], f"{where}.{key}")


def _num_map(value: Any, where: str) -> dict[str, float]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise PriceTableError(f"{where}: expected a mapping")
    return {str(k).lower(): _num(v, f"{where}.{k}") for k, v in value.items()}


def parse_price_table(doc: Any, source: str) -> PriceTable:
    """Builds a table from the YAML document shape of aws_prices.yaml; PriceTableError on bad input."""
    if not isinstance(doc, Mapping) or not isinstance(doc.get("regions", {}), Mapping):
        raise PriceTableError(f"{source}: expected a mapping with a 'regions' mapping")
    regions: dict[str, RegionPrices] = {}
    for name, body in (doc.get("regions") or {}).items():
        where = f"{source}: regions.{name}"
        if not isinstance(body, Mapping):
            raise PriceTableError(f"{where}: expected a mapping")
        regions[normalize_region(str(name))] = RegionPrices(
            instances=_num_map(body.get("instances"), f"{where}.instances"),
            ebs_gb_month=_num_map(body.get("ebs_gb_month"), f"{where}.ebs_gb_month"),
            ebs_snapshot_gb_month=_opt_num(body, "ebs_snapshot_gb_month", where),
            elastic_ip_hourly=_opt_num(body, "elastic_ip_hourly", where),
            load_balancer_hourly=_opt_num(body, "load_balancer_hourly", where),
            nat_gateway_hourly=_opt_num(body, "nat_gateway_hourly", where),
        )
    return PriceTable(regions=regions, as_of=str(doc.get("as_of", "")), source=source)


def load_price_table(path: Path = SHIPPED_PRICES, override: Path | None = None) -> PriceTable:
    table = _read(path, "shipped" if path == SHIPPED_PRICES else str(path))
    if override is not None:
        table = table.merged(_read(override, str(override)))
    return table


def _read(path: Path, source: str) -> PriceTable:
    try:
        doc = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise PriceTableError(f"{path}: cannot read price file: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise PriceTableError(f"{path}: invalid YAML: {exc}") from exc
    return parse_price_table(doc, source)


@lru_cache(maxsize=8)
def _cached_table(override: Path | None) -> PriceTable:
    return load_price_table(SHIPPED_PRICES, override)


def price_table(settings: Settings | None = None) -> PriceTable:
    """The shipped table, merged with settings.prices_file when set (read once per path)."""
    return _cached_table(settings.prices_file if settings is not None else None)


def hourly_price(instance_type: str, region: str, table: PriceTable | None = None) -> float | None:
    """On-demand USD/hour of ``instance_type`` in ``region`` (an AZ is accepted), or None."""
    prices = (table or price_table()).region(region)
    if prices is None:
        return None
    return prices.instances.get(instance_type.strip().lower())


def host_rate(
    instance_type: str | None, region: str | None, onprem_hourly_usd: float, table: PriceTable | None = None
) -> HostRate:
    """The hourly rate of a host: its instance price, else the us-east-1 price, else the on-prem rate."""
    t = table or price_table()
    if instance_type:
        if region:
            price = hourly_price(instance_type, region, t)
            if price is not None:
                return HostRate(price, f"aws:{normalize_region(region)}")
        price = hourly_price(instance_type, FALLBACK_REGION, t)
        if price is not None:
            return HostRate(price, f"aws:{FALLBACK_REGION} (region fallback)")
    return HostRate(onprem_hourly_usd, "onprem")


def ebs_gb_month_price(volume_type: str, region: str, table: PriceTable | None = None) -> float | None:
    prices = (table or price_table()).region(region)
    return None if prices is None else prices.ebs_gb_month.get(volume_type.strip().lower())


def ebs_monthly_cost(volume_type: str, size_gb: float, region: str, table: PriceTable | None = None) -> float | None:
    """Storage part of an EBS volume's monthly cost (provisioned IOPS/throughput not included)."""
    price = ebs_gb_month_price(volume_type, region, table)
    return None if price is None else price * size_gb


def snapshot_gb_month_price(region: str, table: PriceTable | None = None) -> float | None:
    prices = (table or price_table()).region(region)
    return None if prices is None else prices.ebs_snapshot_gb_month


def elastic_ip_hourly_price(region: str, table: PriceTable | None = None) -> float | None:
    prices = (table or price_table()).region(region)
    return None if prices is None else prices.elastic_ip_hourly


def load_balancer_hourly_price(region: str, table: PriceTable | None = None) -> float | None:
    prices = (table or price_table()).region(region)
    return None if prices is None else prices.load_balancer_hourly


def nat_gateway_hourly_price(region: str, table: PriceTable | None = None) -> float | None:
    prices = (table or price_table()).region(region)
    return None if prices is None else prices.nat_gateway_hourly


# --- refresh from the AWS Pricing API (read-only GetProducts) ---------------------------------

def on_demand_usd(item: Mapping[str, Any] | str) -> float | None:
    """The single on-demand USD price of one PriceList entry (a JSON string or its parsed dict)."""
    doc: Any = json.loads(item) if isinstance(item, str) else item
    terms = (doc.get("terms") or {}).get("OnDemand") or {}
    for term in terms.values():
        for dim in (term.get("priceDimensions") or {}).values():
            usd = (dim.get("pricePerUnit") or {}).get("USD")
            if usd is not None:
                return float(usd)
    return None


def _attributes(item: Mapping[str, Any] | str) -> dict[str, str]:
    doc: Any = json.loads(item) if isinstance(item, str) else item
    attrs = (doc.get("product") or {}).get("attributes") or {}
    return {str(k): str(v) for k, v in attrs.items()}


def _products(client: Any, filters: Sequence[tuple[str, str]]) -> Iterator[str]:
    paginator = client.get_paginator("get_products")
    flt = [{"Type": "TERM_MATCH", "Field": f, "Value": v} for f, v in filters]
    for page in paginator.paginate(ServiceCode="AmazonEC2", Filters=flt, FormatVersion="aws_v1"):
        yield from page.get("PriceList", [])


def fetch_instance_prices(client: Any, region: str, instance_types: Iterable[str] | None = None) -> dict[str, float]:
    """On-demand Linux shared-tenancy prices in ``region``; all instance types when none are named."""
    base = [("regionCode", region), ("operatingSystem", "Linux"), ("tenancy", "Shared"),
            ("preInstalledSw", "NA"), ("capacitystatus", "Used"), ("licenseModel", "No License required")]
    out: dict[str, float] = {}
    groups: list[list[tuple[str, str]]] = (
        [[*base, ("instanceType", t)] for t in instance_types] if instance_types is not None else [base]
    )
    for filters in groups:
        for item in _products(client, filters):
            itype = _attributes(item).get("instanceType")
            price = on_demand_usd(item)
            if itype and price:
                out[itype.lower()] = price
    return out


def fetch_ebs_prices(client: Any, region: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for item in _products(client, [("regionCode", region), ("productFamily", "Storage")]):
        vtype = _attributes(item).get("volumeApiName")
        price = on_demand_usd(item)
        if vtype and price is not None:
            out[vtype.lower()] = price
    return out


def aws_credentials_available() -> bool:
    import boto3

    return boto3.session.Session().get_credentials() is not None


def refresh_price_table(
    regions: Sequence[str], instance_types: Iterable[str] | None = None, client: Any | None = None
) -> PriceTable:
    """A table of current prices from the Pricing API for ``regions`` (merge it over the shipped one)."""
    if client is None:
        import boto3

        client = boto3.client("pricing", region_name="us-east-1")
    types = list(instance_types) if instance_types is not None else None
    out: dict[str, RegionPrices] = {}
    for region in regions:
        r = normalize_region(region)
        out[r] = RegionPrices(
            instances=fetch_instance_prices(client, r, types), ebs_gb_month=fetch_ebs_prices(client, r)
        )
    return PriceTable(regions=out, source="aws-pricing-api")


def table_document(table: PriceTable) -> dict[str, Any]:
    regions: dict[str, Any] = {}
    for name, p in sorted(table.regions.items()):
        body: dict[str, Any] = {"instances": dict(sorted(p.instances.items())),
                                "ebs_gb_month": dict(sorted(p.ebs_gb_month.items()))}
        for key in ("ebs_snapshot_gb_month", "elastic_ip_hourly", "load_balancer_hourly", "nat_gateway_hourly"):
            if getattr(p, key) is not None:
                body[key] = getattr(p, key)
        regions[name] = body
    return {"as_of": table.as_of, "currency": "USD", "hours_per_month": HOURS_PER_MONTH, "regions": regions}


def dump_price_table(table: PriceTable, path: Path) -> None:
    path.write_text(yaml.safe_dump(table_document(table), sort_keys=False))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="execsight.pricing", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    show = sub.add_parser("show", help="print the hourly price of an instance type")
    show.add_argument("instance_type")
    show.add_argument("region")
    show.add_argument("--prices-file", type=Path)
    ref = sub.add_parser("refresh", help="fetch prices from the AWS Pricing API (needs credentials)")
    ref.add_argument("--region", action="append", required=True)
    ref.add_argument("--instance-type", action="append")
    ref.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    if args.cmd == "show":
        table = load_price_table(SHIPPED_PRICES, args.prices_file)
        price = hourly_price(args.instance_type, args.region, table)
        if price is None:
            print(f"no price for {args.instance_type} in {args.region}", file=sys.stderr)
            return 1
        print(f"{price:g}")
        return 0
    if not aws_credentials_available():
        print("no AWS credentials found; the shipped table stays in use", file=sys.stderr)
        return 2
    fresh = refresh_price_table(args.region, args.instance_type)
    dump_price_table(replace(fresh, as_of=""), args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
