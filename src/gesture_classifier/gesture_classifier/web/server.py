"""The HTTP server of the web page in a thread of its own, with its own asyncio loop: the ROS
executor keeps the main thread, and the two meet only through thread-safe hand-overs
(:meth:`~gesture_classifier.web.app.Signal.bump_threadsafe`, ``loop.call_soon_threadsafe``).
"""
from __future__ import annotations

import asyncio
import socket
import threading
from pathlib import Path

from aiohttp import web

from .app import (MAX_FIELD, MAX_LINE, FrameHub, Signal, WebConfig,
                  access_warning, effective_token, make_app, read_assets)

__all__ = ['asset_folder', 'WebServer']


def asset_folder() -> Path:
    """The page's files: share/gesture_classifier/web (colcon install), or src/.../web in a
    source checkout."""
    try:
        from ament_index_python.packages import get_package_share_directory
        share = Path(get_package_share_directory('gesture_classifier')) / 'web'
        if (share / 'index.html').is_file():
            return share
    except Exception:  # ament_index not importable or package not installed
        pass
    return Path(__file__).resolve().parents[2] / 'web'


class WebServer:
    """The page for ``backend`` (a web.app Backend with ``attach(frames, changed)``) on
    ``config.host``/``config.port``, served from a thread; :meth:`start` returns once it
    listens, :meth:`stop` ends it."""

    def __init__(self, config: WebConfig, backend):
        self.config, self.backend = config, backend
        self.port = 0                  # the port listened on, once started
        self.url = ''
        self.token, self.generated = effective_token(config.host, config.token)
        #: what the log and the page say while no token is required ('' otherwise)
        self.warning = access_warning(self.token)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> WebServer:
        """Start the thread and wait until it listens.

        Raises:
            ValueError: the address cannot be used (port taken, unknown host) or the page's
                files are missing.
        """
        cfg = self.config
        try:
            assets = read_assets(asset_folder())
        except OSError as exc:
            raise ValueError(f'the page\'s files are missing: {exc}') from None
        ready, failure = threading.Event(), []
        self._thread = threading.Thread(
            target=self._serve, args=(WebConfig(**{**cfg.__dict__, 'token': self.token}),
                                      assets, ready, failure), name='web', daemon=True)
        self._thread.start()
        ready.wait()
        if failure:
            raise ValueError(f'cannot listen on {cfg.host}:{cfg.port}: {failure[0]}')
        host = cfg.host if cfg.host not in ('0.0.0.0', '::', '') else socket.gethostname()
        host = f'[{host}]' if ':' in host else host
        self.url = f'http://{host}:{self.port}/'
        return self

    def _serve(self, cfg: WebConfig, assets, ready: threading.Event, failure: list) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        frames, changed = FrameHub(loop), Signal(loop)
        self.backend.attach(frames, changed)
        app = make_app(cfg, self.backend, frames, changed, assets)
        # keepalive_timeout: aiohttp (>= 3.10) starts it when a connection opens and stops it
        # only when a request's headers are complete, so it bounds the time to send headers
        # (slowloris) as well as the idle time between requests
        limits = dict(access_log=None, keepalive_timeout=cfg.header_timeout,
                      max_line_size=MAX_LINE, max_field_size=MAX_FIELD)
        try:  # aiohttp >= 3.9 takes shutdown_timeout here, 3.8 (Ubuntu 22.04) on the site
            runner = web.AppRunner(app, shutdown_timeout=1.0, **limits)
            site_args = {}
        except TypeError:
            runner = web.AppRunner(app, **limits)
            site_args = {'shutdown_timeout': 1.0}
        try:
            loop.run_until_complete(runner.setup())
            site = web.TCPSite(runner, cfg.host, cfg.port, **site_args)
            loop.run_until_complete(site.start())
            self.port = runner.addresses[0][1]
        except Exception as exc:  # address in use, unknown host, ...: the node exits
            failure.append(exc)
            ready.set()
            loop.run_until_complete(runner.cleanup())
            loop.close()
            return
        self._loop = loop
        ready.set()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(runner.cleanup())
            loop.close()

    def stop(self) -> None:
        loop, self._loop = self._loop, None
        if loop is not None:
            loop.call_soon_threadsafe(loop.stop)
            self._thread.join(timeout=5.0)
