"""The engine: readers, timers, cross-thread calls, stop."""

from __future__ import annotations

import os
import socket
import threading
import time

from ioth.runtime.engine import Engine


def test_reader_timer_and_threadsafe_call() -> None:
    a, b = socket.socketpair()
    got: list[bytes] = []
    fired = threading.Event()
    done = threading.Event()
    with Engine("test") as engine:

        def on_read() -> None:
            got.append(b.recv(100))
            done.set()

        engine.add_reader(b.fileno(), on_read)
        a.send(b"hello")
        assert done.wait(5)
        assert got == [b"hello"]
        engine.call_later(0.01, fired.set)
        assert fired.wait(5)
        box: list[str] = []
        ev = threading.Event()
        engine.call_soon_threadsafe(lambda: (box.append(threading.current_thread().name), ev.set()))
        assert ev.wait(5)
        assert box == ["test"]
        engine.remove_reader(b.fileno())
        engine.remove_reader(b.fileno())  # idempotent
    a.close()
    b.close()


def test_cancelled_timer_does_not_run_and_errors_are_counted() -> None:
    ran: list[int] = []
    with Engine() as engine:
        h = engine.call_later(0.01, lambda: ran.append(1))
        h.cancel()
        engine.call_later(0.0, lambda: 1 / 0)
        ok = threading.Event()
        engine.call_later(0.05, ok.set)
        assert ok.wait(5)
        assert ran == []
        assert engine.callback_errors == 1


def test_run_on_calling_thread_until_stop() -> None:
    engine = Engine()
    r, w = os.pipe()
    seen: list[bytes] = []

    def on_read() -> None:
        seen.append(os.read(r, 10))
        engine.stop()

    engine.add_reader(r, on_read)
    threading.Timer(0.05, lambda: os.write(w, b"x")).start()
    t0 = time.monotonic()
    engine.run()
    assert seen == [b"x"]
    assert time.monotonic() - t0 < 5
    engine.close()
    os.close(r)
    os.close(w)


def test_stop_before_run_makes_run_return_at_once() -> None:
    engine = Engine()
    engine.stop()
    engine.run()  # must not block
    ran: list[int] = []
    engine.call_later(0.0, lambda: (ran.append(1), engine.stop()))
    engine.run()  # the stop was consumed: this run serves until the timer stops it
    assert ran == [1]
    engine.close()


def test_earlier_timer_from_another_thread_wakes_a_sleeping_loop() -> None:
    fired = threading.Event()
    with Engine() as engine:
        engine.call_later(3600.0, lambda: None)  # the loop sleeps until this one
        time.sleep(0.05)
        t0 = time.monotonic()
        engine.call_later(0.01, fired.set)
        assert fired.wait(5)
        assert time.monotonic() - t0 < 4  # (not an hour)
        ran: list[int] = []
        ev = threading.Event()
        time.sleep(0.05)
        engine.call_soon_threadsafe(lambda: (ran.append(1), ev.set()))
        assert ev.wait(5) and ran == [1]


def test_suspend_resume_replace_and_remove_readers() -> None:
    a, b = socket.socketpair()
    hits: list[str] = []
    ev = threading.Event()
    with Engine() as engine:
        engine.add_reader(b.fileno(), lambda: (hits.append("old"), b.recv(10), ev.set()))
        engine.add_reader(b.fileno(), lambda: (hits.append("new"), b.recv(10), ev.set()))
        a.send(b"1")
        assert ev.wait(5) and hits == ["new"]  # the second add_reader replaced the callback
        ev.clear()
        assert engine.suspend_reader(b.fileno())
        assert not engine.suspend_reader(12345)  # not registered
        a.send(b"2")
        assert not ev.wait(0.1)  # suspended: not served
        engine.resume_reader(b.fileno())
        assert ev.wait(5) and hits == ["new", "new"]  # level-triggered: served on resume
        engine.remove_reader(b.fileno())
        ev.clear()
        a.send(b"3")
        assert not ev.wait(0.1)
        c, d = socket.socketpair()
        engine.add_reader(d.fileno(), lambda: None)
        d.close()  # closed while watched: removing it is still fine
        engine.remove_reader(d.fileno())
        c.close()
    a.close()
    b.close()
