"""Volunteer credit: accepted work counted per volunteer, taken back when refuted, kept across restarts."""

from __future__ import annotations

import numpy as np
from websockets.exceptions import ConnectionClosed

from mlitb.master.checkpoint import Checkpoint
from mlitb.master.credit import REMEMBERED_CONNECTIONS, Ledger
from mlitb.master.runtime import ProjectRuntime
from mlitb.protocol import decode, result_frame
from tests.browser_support import eventually
from tests.master_support import System, trainer


def test_the_ledger_credits_revokes_and_round_trips():
    ledger = Ledger.load(None)
    ledger.credit("c1", "alice", "Alice", 64)
    ledger.credit("c1", "alice", "", 32)
    ledger.credit("c2", "bob", "Bob", 500)
    ledger.credit("c3", "", "", 999)  # anonymous: nobody to credit
    assert ledger.top(5) == [{"volunteer": "bob", "name": "Bob", "examples": 500, "results": 1},
                             {"volunteer": "alice", "name": "Alice", "examples": 96, "results": 2}]
    ledger.revoke("c2")  # bob's connection was refuted: all it earned is taken back
    assert ledger.of("bob")["examples"] == 0 and ledger.of("bob")["results"] == 0
    assert Ledger.load(ledger.dump()).top(5) == ledger.top(5)
    for i in range(REMEMBERED_CONNECTIONS + 5):
        ledger.credit(f"x{i}", "carol", "", 1)
    assert len(ledger.by_connection) == REMEMBERED_CONNECTIONS


async def test_accepted_work_is_credited_refuted_work_is_not_and_credit_survives_a_checkpoint(system: System):
    project = await system.create_project(iteration_ms=60_000)
    pid = project["id"]
    async with trainer(system, pid, volunteer="honest-volunteer") as honest:
        counts = []
        for _ in range(2):
            frame = honest.compute(await honest.expect("work"))
            counts.append(decode(frame, 1 << 30)["count"])
            await honest.send(frame)
        await honest.expect("work")
    credit = (await system.api.get(f"/api/projects/{pid}/credit?volunteer=honest-volunteer")).json()
    assert credit["volunteer"] == {"volunteer": "honest-volunteer", "name": "HONEST-VOLUNTEER",
                                   "examples": sum(counts), "results": 2}

    async with trainer(system, pid, volunteer="cheat") as cheat:
        work = await cheat.expect("work")
        honest_frame = decode(cheat.compute(work), 1 << 30)
        wrong = -np.frombuffer(honest_frame["grad"], "<f4")  # sign-flipped: the spot check refutes it
        await cheat.send(result_frame(work["iteration"], wrong, honest_frame["count"], honest_frame["loss_sum"],
                                      honest_frame["correct"], 5.0, honest_frame["batches"]))
        try:
            error = await cheat.expect("error", timeout=180)  # the verifier is niced: a busy machine starves it
        except ConnectionClosed:
            error = cheat.errors[-1]
        assert error["code"] == "untrusted"
    rt = system.runtime(pid)
    await eventually(lambda: rt.credit.of("cheat")["results"] == 0, timeout=10, what="the refuted credit taken back")

    restored = ProjectRuntime.build(rt.definition, rt.manifest, rt.settings, Checkpoint.decode(rt.snapshot().encode()))
    assert restored.credit.of("honest-volunteer")["examples"] == sum(counts)
