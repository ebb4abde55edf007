import pandas as pd

from edge.schemas import Profile
from export.cases import choose_protocol, leave_last_out, session_cases, user_cases


def log(rows):
    """rows: (day, user, session, item, type)"""
    frame = pd.DataFrame(rows, columns=["day", "user_id", "session_id", "item_id", "type"])
    frame["ts"] = pd.Timestamp("2026-01-01", tz="UTC") + pd.to_timedelta(frame.pop("day"), "D")
    frame["dwell_ms"] = float("nan")
    frame["device"], frame["country"], frame["local_hour"] = "mobile", "de", 20
    return frame.sort_values("ts", kind="stable").reset_index(drop=True)


def profile(bought=()):
    return Profile(["x"], [1.0], list(bought), 1, len(bought), 0.0, 0.0, 10.0)


def test_user_cases_ask_for_new_items_only():
    window = log(
        [
            (5, "u1", "s1", "a", "purchase"),
            (5, "u1", "s1", "b", "purchase"),
            (5, "u2", "s2", "a", "purchase"),
            (6, "u3", "s3", "c", "purchase"),
            (6, "u1", "s4", "c", "view"),
        ]
    )
    profiles = {"u1": profile(bought=["a"]), "u2": profile(bought=["a"])}
    cases = user_cases(window, profiles, ["purchase"], limit=10, seed=0)
    # u2 only re-bought, u3 has no profile: neither is a case.
    assert [(c.user_id, set(c.relevant), set(c.blocked)) for c in cases] == [("u1", {"b"}, {"a"})]
    assert cases[0].context.hour_bucket == "evening" and cases[0].session == ()


def test_session_cases_cut_before_a_later_target_and_keep_the_prefix():
    window = log(
        [
            (1, "", "s1", "a", "view"),
            (1, "", "s1", "b", "view"),
            (1, "", "s1", "c", "view"),
            (1, "", "s2", "z", "view"),
            (2, "u1", "s3", "d", "view"),
            (2, "u1", "s3", "e", "purchase"),
        ]
    )
    cases = session_cases(window, {"u1": profile()}, ["view", "purchase"], limit=10, seed=0)
    by_session = {c.session[0].item_id: c for c in cases}
    assert set(by_session) == {"a", "d"}  # s2 has one event: nothing to ask
    anonymous = by_session["a"]
    prefix = [e.item_id for e in anonymous.session]
    assert anonymous.user_id is None and prefix in (["a"], ["a", "b"])
    assert set(anonymous.relevant) == {"bc"[len(prefix) - 1]}
    known = by_session["d"]
    assert known.user_id == "u1" and set(known.relevant) == {"e"}


def test_an_item_carted_before_it_is_bought_is_asked_for_before_it_went_in_the_cart():
    """The edge never recommends what is in the cart: the question is asked before the
    add_to_cart, with the cart the events left then; an item carted at the session's first
    event is no question at all."""
    window = log(
        [
            (1, "", "s1", "a", "view"),
            (1, "", "s1", "b", "add_to_cart"),
            (1, "", "s1", "c", "view"),
            (1, "", "s1", "c", "add_to_cart"),
            (1, "", "s1", "c", "purchase"),
            (2, "", "s2", "d", "add_to_cart"),
            (2, "", "s2", "d", "purchase"),
        ]
    )
    cases = session_cases(window, {}, ["purchase"], limit=10, seed=0)
    [case] = cases
    assert set(case.relevant) == {"c"}
    assert [(e.type, e.item_id) for e in case.session] == [
        ("view", "a"),
        ("add_to_cart", "b"),
        ("view", "c"),
    ]
    assert set(case.blocked) == {"b"}  # the cart then: b, never recommended by any model


def test_sampling_is_seeded_and_bounded():
    rows = [(1, "", f"s{i}", item, "view") for i in range(50) for item in "abc"]
    window = log(rows)
    first = session_cases(window, {}, ["view"], limit=7, seed=3)
    again = session_cases(window, {}, ["view"], limit=7, seed=3)
    assert len(first) == 7 and first == again


def test_leave_last_out_holds_out_each_customers_last_basket_and_what_follows():
    events = log(
        [
            (1, "u1", "s1", "a", "purchase"),
            (2, "u1", "s2", "b", "purchase"),
            (2, "u1", "s2", "c", "purchase"),
            (3, "u1", "s3", "d", "view"),
            (1, "u2", "s4", "a", "purchase"),
        ]
    )
    train, test = leave_last_out(events, ["purchase"])
    assert sorted(test["item_id"]) == ["b", "c"]
    # u1's later view would tell what they did next; u2 has one purchase and stays in training.
    assert sorted(train["item_id"]) == ["a", "a"]


def test_a_time_windows_cases_are_about_users_when_most_of_its_events_are_known_customers():
    assert choose_protocol("auto", 1 / 3) == "sessions"
    assert choose_protocol("temporal", 0.5) == "users"
    assert choose_protocol("users", 0.0) == "users"  # as set
    assert choose_protocol("random", 0.0) == "users"  # a per-customer split
