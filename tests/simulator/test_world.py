"""The catalog and the shoppers: their columns, and the skews real shops have."""

from __future__ import annotations

from simulator import SimulatedShop


def test_catalog_and_users(shop: SimulatedShop) -> None:
    catalog, users = shop.catalog, shop.users
    assert list(catalog.columns) == ["item_id", "title", "category", "price", "brand", "in_stock"]
    assert len(catalog) == 1_000 and catalog["item_id"].is_unique
    assert catalog["category"].nunique() == 20
    assert (catalog["price"] > 0).all()
    assert 0.01 <= 1 - catalog["in_stock"].mean() <= 0.06
    # Category sizes are skewed, and typical prices differ by category.
    sizes = catalog["category"].value_counts()
    assert sizes.iloc[0] > 3 * sizes.iloc[-1]
    median_price = catalog.groupby("category")["price"].median()
    assert median_price.max() > 3 * median_price.min()
    assert list(users.columns) == ["user_id", "loyalty_tier", "age_band", "region"]
    assert len(users) == 2_000 and users["user_id"].is_unique
    assert shop.events["user_id"].isin(users["user_id"]).all()
    assert set(users["loyalty_tier"]) == {"none", "silver", "gold", "platinum"}


def test_heavy_tailed_activity_and_long_tail_items(shop: SimulatedShop) -> None:
    per_user = shop.sessions["user_id"].value_counts()
    assert per_user.max() > 8 * per_user.median()
    views = shop.events.loc[shop.events["type"] == "view", "item_id"].value_counts()
    assert views.iloc[:10].sum() > 0.1 * views.sum()  # top 1% of items
    # Users come back over many days, which makes a temporal split meaningful.
    days = shop.events.groupby("user_id")["ts"].agg(lambda ts: ts.dt.floor("D").nunique())
    assert (days >= 10).mean() > 0.1
