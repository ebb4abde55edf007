"""A seeded simulator of an online shop, for tests and benchmarks of the build pipeline
(`edgeperso simulate` writes one to files).

The world has latent truth (user and item taste vectors, per-context category biases,
per-session purchase intent) that the exported frames never show directly, so a model that
scores well on the simulated log has learned real effects rather than the simulator's
bookkeeping. Everything is vectorized with numpy: sessions are generated as a block and each
view step is drawn for every still-active session at once, which keeps ten million events
well under a minute.

    world     the catalog, the shoppers, the context effects
    sessions  when sessions start and which items their views open
    funnel    carts, removals, purchases, and which sessions are kept
    frames    the event log and the sessions' ground truth as frames
    shop      `SimulatedShop`: those frames, and writing them to files
    simulate  `simulate_shop`, the entry point
"""

from simulator.shop import SimulatedShop
from simulator.simulate import ShopSizeError, simulate_shop
from simulator.world import COUNTRIES, DEVICES, UTC_OFFSET_H

__all__ = [
    "COUNTRIES",
    "DEVICES",
    "UTC_OFFSET_H",
    "ShopSizeError",
    "SimulatedShop",
    "simulate_shop",
]
