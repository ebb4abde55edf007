import asyncio

from edge.turns import Turns


def run_heavy_and_cheap(turns: Turns | None) -> list[str]:
    """Three CPU-bound requests (no await inside) and a cheap one that yields between its steps,
    started together; the order their steps ran in."""
    log: list[str] = []

    async def heavy(name: str) -> None:
        if turns is None:
            log.append(f"{name} runs")
            return
        async with turns.turn():
            log.append(f"{name} runs")

    async def cheap() -> None:
        for _ in range(3):
            log.append("cheap")
            await asyncio.sleep(0)

    async def main() -> None:
        await asyncio.gather(heavy("a"), heavy("b"), heavy("c"), cheap())

    asyncio.run(main())
    return log


def test_without_turns_the_heavy_requests_run_back_to_back():
    # The case Turns exists for: nothing else runs between them.
    assert run_heavy_and_cheap(None) == ["a runs", "b runs", "c runs", "cheap", "cheap", "cheap"]


def test_turns_run_one_at_a_time_in_arrival_order_with_a_loop_pass_before_each():
    log = run_heavy_and_cheap(Turns())
    assert [step for step in log if step != "cheap"] == ["a runs", "b runs", "c runs"]
    # The loop makes a pass before every turn, so the cheap request's steps come in between.
    assert log == ["cheap", "a runs", "cheap", "b runs", "cheap", "c runs"]


def test_a_turn_is_given_back_when_its_holder_fails():
    async def main() -> bool:
        turns = Turns()
        try:
            async with turns.turn():
                raise ValueError("a failing step")
        except ValueError:
            pass
        async with turns.turn():  # would wait forever if the failure kept the turn
            return True

    assert asyncio.run(asyncio.wait_for(main(), timeout=5))
