"""The Agent wires the parts together; agent.lifecycle owns the states between them: startup ->
run -> reload (prepare, then commit whole) -> shutdown, in reverse order, bounded."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import math
import os
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from aiohttp import web
from prometheus_client.metrics_core import GaugeMetricFamily, Metric

from agent import __version__, connection, security
from agent.collectors.base import Collector
from agent.collectors.catalog import BY_NAME, Context
from agent.collectors.runtime import RuntimeProbes, grid_delay
from agent.config import Config, ConfigError, ConfigSource, parse_listen_address
from agent.exposition.encoding import labelled
from agent.exposition.formats import OPENMETRICS, Demand
from agent.exposition.registry import Registry, Snapshot
from agent.exposition.render import Renderer
from agent.exposition.selfmetrics import RuntimeFamilies, collector_families
from agent.health import Health
from agent.history import History
from agent.lifecycle import Lifecycle, State, Stopping
from agent.listener import DrainingSite
from agent.logs import kv
from agent.pool import DaemonThreadPool
from agent.remediation.counters import Counters
from agent.remediation.settings import RemediationConfig
from agent.remote_write.settings import RemoteWriteConfig
from agent.scheduler import Job, Scheduler
from agent.ssh import SshPlan, SshSupervisor
from agent.ssh.web import SshRoutes
from agent.status_facts import page_facts, sample_history
from agent.systemd import Notifier
from agent.web import build_app
from agent.webconfig import WebSettings

if TYPE_CHECKING:
    from agent.remediation.engine import Engine, RemediationPlan
    from agent.remote_write.pusher import Pusher

log = logging.getLogger("hostagent")

# Settings that only take effect at start; a reload that changes them logs it and keeps the old.
RESTART_ONLY = (("web", "listen_address"), ("scheduler", "workers"), ("debug", "enabled"),
                ("debug", "tracemalloc"), ("web", "read_timeout"), ("web", "idle_timeout"),
                ("web", "max_header_size"),
                ("web", "telemetry_path"), ("web", "disable_exporter_metrics"),
                *(("remote_write", name) for name in RemoteWriteConfig.model_fields))


# Young collections only when this many more container objects are alive than at the last
# one. A tick's families live until the next tick replaces them (about 1,500 objects here at
# its peak), so at Python's default of 700 every tick paid two young collections, and every
# tenth an older one walking every live family (~0.6 ms of CPU per 15 s tick in all); cyclic
# garbage, which is what collections are for, is rare in the agent and stays bounded by it.
GC_YOUNG_THRESHOLD = 20_000


class StartupError(Exception):
    """The agent could not start (e.g. cannot bind); exit code 3."""


def build_collector(name: str, config: Config, probes: RuntimeProbes | None = None,
                    state: dict[str, dict[str, Any]] | None = None) -> Collector:
    """state: per-collector dicts that outlive a rebuild (kept by the Agent across reloads)."""
    paths = config.paths
    context = Context(procfs=paths.procfs, sysfs=paths.sysfs, rootfs=paths.rootfs,
                      udev_data=paths.udev_data, probes=probes,
                      state=(state if state is not None else {}).setdefault(name, {}))
    return BY_NAME[name].create(context, config.collectors.get(name))


def build_jobs(config: Config, reuse: dict[str, Job] | None = None,
               previous: Config | None = None, probes: RuntimeProbes | None = None,
               state: dict[str, dict[str, Any]] | None = None) -> list[Job]:
    """Jobs for the enabled collectors. With a previous config, a collector whose settings
    and paths did not change keeps its Job (and its collector's state). probes: the agent's
    own measurements, for the runtime collector."""
    jobs = []
    for name in BY_NAME:
        settings = config.collectors.get(name)
        if not settings.enabled:
            continue
        old = (reuse or {}).get(name)
        if (old is not None and previous is not None and previous.paths == config.paths
                and previous.collectors.get(name) == settings):
            jobs.append(old)
        else:
            jobs.append(Job(name, build_collector(name, config, probes, state),
                            settings.interval, settings.effective_timeout))
    return jobs


# The collectors node_exporter also has: its meta series (node_scrape_collector_*) repeat them.
NODE_EXPORTER_NAMES = frozenset(name for name, d in BY_NAME.items() if d.node_exporter)


def target_modules(config: Config) -> frozenset[str]:
    """The SSH probe modules whose series /metrics carries, with a `target` label: login and
    checks always (they are the agent's own view of each target), the node module's host
    series only when ssh.node_on_metrics asks for them (otherwise they are only per target,
    on /probe), so a remote host never adds to this host's node_* series."""
    return frozenset({"login", "checks", *(["node"] if config.ssh.node_on_metrics else [])})


class Agent:
    def __init__(self, config: Config, jobs: list[Job] | None = None,
                 source: ConfigSource | None = None,
                 notifier: Notifier | None = None) -> None:
        self.config = config
        self.source = source or ConfigSource()
        self.notifier = notifier or Notifier()
        self.registry = Registry()
        self._pool = DaemonThreadPool(config.scheduler.workers, "collector")
        self._render_pool = DaemonThreadPool(1, "render")
        self.probes = RuntimeProbes(pool=self._pool)
        self._collector_state: dict[str, dict[str, Any]] = {}
        if jobs is None:
            jobs = build_jobs(config, probes=self.probes, state=self._collector_state)
        self._jobs = {job.name: job for job in jobs}
        # Prometheus's format is ready before /-/ready says 200: a cold burst of scrapes
        # finds its bytes instead of piling up behind a first render.
        self.demand = Demand([OPENMETRICS])
        self.scheduler = Scheduler(self._jobs.values(), self.registry, self._pool,
                                   config.scheduler.jitter,
                                   on_late=self.probes.loop_lag.observe_tick)
        self.renderer = Renderer(self.registry, self.scheduler.statuses, self._render_pool,
                                 self.demand, not config.web.disable_exporter_metrics,
                                 NODE_EXPORTER_NAMES, self._settled, self._rendered)
        self.renderer.target_modules = target_modules(config)
        self.lifecycle = Lifecycle(self.notifier, self._status_line)
        self.health = Health(self.scheduler.statuses, lambda: self.renderer.current)
        self.health.deaths = self.lifecycle.deaths
        self.scheduler.watch = self.lifecycle.watch
        self.ssh = SshSupervisor(self.registry, self.lifecycle.watch, self.lifecycle.recovered)
        # Made with the first rule (see _prepare_remediation): most agents never run one.
        self.remediation: Engine | None = None
        self.addresses: list[str] = []
        self.runner: web.AppRunner | None = None
        self.pusher: Pusher | None = None
        self.endpoint = security.Endpoint()
        self.started = asyncio.Event()
        self._background: list[asyncio.Task[None]] = []
        self._reloads: set[asyncio.Task[None]] = set()
        self._last_reload_ok = True
        self._last_reload_success = time.time()
        self._publish_reload_state()
        self.history = History()
        self._history_at = -math.inf  # monotonic time of the last chart point
        self._gc_threshold: tuple[int, int, int] | None = None  # the thresholds before start

    @property
    def reload_state(self) -> tuple[bool, float]:
        """(last reload succeeded, when the running configuration was loaded)."""
        return self._last_reload_ok, self._last_reload_success

    def _disabled_collectors(self) -> list[str]:
        return [name for name in BY_NAME if not self.config.collectors.get(name).enabled]

    def request_stop(self) -> None:
        self.lifecycle.request_stop()

    async def run(self) -> int:
        """Start, serve until asked to stop, stop. The shutdown path runs whatever happened
        before it, a failed start included, and undoes only what was started."""
        self.lifecycle.install_signals(self._reload_on_signal)
        try:
            await self.lifecycle.start(self._start)
            await self.lifecycle.stop_requested.wait()
        except Stopping:
            pass  # a signal came during start
        finally:
            await self._shutdown()
            self.lifecycle.remove_signals()
        return 0

    async def _start(self) -> None:
        check = self.lifecycle.check
        await self.endpoint.load(self.config.web.config_file)  # ConfigError: exit 2
        app = build_app(self.health, self.renderer, lambda: self.config.web, self.reload,
                        self._disabled_collectors, self.ssh.status, self.probes.requests,
                        lambda: page_facts(self))
        SshRoutes(self.ssh, self.renderer, lambda: self.config.web).add_to(app)
        security.protect(app, self.endpoint, lambda: self.config.web)
        if self.config.debug.enabled:
            from agent.profiling.web import DebugRoutes  # only loaded when turned on

            DebugRoutes(self.config.debug).add_to(app)
        handler_args = {"access_log": None, **security.limits(self.config.web)}
        runner = web.AppRunner(app, shutdown_timeout=self.config.web.shutdown_timeout,
                               **handler_args)
        await runner.setup()
        self.runner = runner
        assert runner.server is not None
        connections = connection.factory(runner.server, self.config.web.read_timeout,
                                         **handler_args)
        host, port = parse_listen_address(self.config.web.listen_address)
        try:
            await DrainingSite(runner, host, port, ssl_context=self.endpoint.context,
                               protocol=connections).start()
        except OSError as exc:
            # A resolver error's errno is negative (EAI_*): os.strerror knows none of them.
            reason = os.strerror(exc.errno) if exc.errno and exc.errno > 0 \
                else exc.strerror or str(exc)
            raise StartupError(
                f"cannot listen on {self.config.web.listen_address}: {reason}") from None
        self.addresses = [_format_address(a) for a in runner.addresses]
        check()
        # What is loaded by now lives as long as the agent: frozen, it is out of the sight of
        # full collections, which then walk only what collection cycles leave (~30 ms -> ~0).
        gc.collect()
        gc.freeze()
        self._gc_threshold = gc.get_threshold()
        gc.set_threshold(max(self._gc_threshold[0], GC_YOUNG_THRESHOLD), *self._gc_threshold[1:])
        self.scheduler.start()
        ssh = await self.ssh.prepare(self.config.ssh)
        check()
        ssh.commit()
        remediation = self._prepare_remediation(self.config.remediation)
        remediation.commit()
        self.probes.gc_pauses.start()
        spawn = self.lifecycle.spawn
        background = [spawn(self.renderer.run(), "renderer"),
                      spawn(self.probes.loop_lag.run(), "loop-lag"),
                      spawn(self._announce(), "systemd-status"),
                      spawn(self.endpoint.watch(), "web-config")]
        self._background = background
        if self.notifier.watchdog_interval:
            self._background.append(spawn(
                self._watchdog(self.notifier.watchdog_interval, list(background)),
                "systemd-watchdog"))
        await self._start_push()
        log.info("listening", extra=kv(version=__version__, address=",".join(self.addresses),
                                       collectors=len(self._jobs),
                                       scheme="https" if self.endpoint.context else "http"))
        self.started.set()

    async def _shutdown(self) -> None:
        # After a failed start the error says it all (one line, see the CLI's exit codes).
        quiet = not self.started.is_set()
        if not quiet:
            log.info("shutting down")
        self.health.stopping = True
        await self.lifecycle.stop()  # STOPPING=1 (once) and no reload commits after it
        # Stops accepting, lets in-flight requests finish within the grace period.
        if self.runner is not None:
            await self.runner.cleanup()
        if self.remediation is not None:
            await self.remediation.stop()
        await self.scheduler.stop()
        await self.ssh.stop()
        if self.pusher is not None:
            await self.pusher.stop()
        for task in self._background:
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        self.probes.gc_pauses.stop()
        gc.unfreeze()  # what the agent held becomes collectable again (an agent in a test)
        if self._gc_threshold is not None:
            gc.set_threshold(*self._gc_threshold)
        # Threads stuck in a hung call are daemons: abandoned, they cannot block exit.
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._render_pool.shutdown(wait=False, cancel_futures=True)
        self.lifecycle.stopped()
        if not quiet:
            log.info("stopped")

    # Remediation reads the agent's own series and publishes its counters

    def families_of(self, target: str) -> list[Metric]:
        """The families of the local host, or of one SSH target (its node module)."""
        if target != "local":
            remote = self.registry.targets.get(target)
            return [] if remote is None else labelled(remote.all_families(), remote.labels)
        return [family for name, snapshot in self.registry.snapshots.items()
                if name != "remediation" for family in snapshot.families]

    def _publish_remediation(self, families: list[Metric]) -> None:
        self.registry.publish(Snapshot.of("remediation", families))

    def _prepare_remediation(self, config: RemediationConfig) -> RemediationPlan | _NoRules:
        if self.remediation is None:
            if not (config.enabled and config.rules):
                return _NoRules(self)
            # Loaded with the first rule: the engine brings a regex engine and the
            # Alertmanager client, which an agent without rules never needs.
            from agent.remediation.engine import Engine

            self.remediation = Engine(self.families_of, self._publish_remediation,
                                      self.ssh.run_on, self.ssh.check_success,
                                      self.lifecycle.watch)
        return self.remediation.prepare(config)

    @property
    def remediation_counters(self) -> Counters | None:
        return None if self.remediation is None else self.remediation.counters

    async def _start_push(self) -> None:
        if not self.config.remote_write.endpoints:
            return
        from agent.remote_write.pusher import Pusher  # only loaded when configured

        runtime = RuntimeFamilies(not self.config.web.disable_exporter_metrics)

        def own(dropped: Mapping[str, int]) -> list[Metric]:
            # What the renderer adds to /metrics besides the snapshots.
            return [*collector_families(self.scheduler.statuses(), dropped, NODE_EXPORTER_NAMES),
                    *runtime.collect()]

        self.pusher = Pusher(self.config.remote_write, self.registry,
                             self.config.web.listen_address, own=own)
        try:
            await self.pusher.start()
        except RuntimeError as exc:
            self.pusher = None
            raise StartupError(str(exc)) from None
        self.health.remote_write = self.pusher.status

    # Reload

    def _reload_on_signal(self) -> None:
        async def reload_logging_errors() -> None:
            # Already logged: a ConfigError with its field path, Stopping needs no word.
            with contextlib.suppress(ConfigError, Stopping):
                await self.reload()

        task = asyncio.create_task(reload_logging_errors(), name="reload")
        self._reloads.add(task)
        task.add_done_callback(self._reloads.discard)

    async def reload(self) -> None:
        """Re-read the config and apply it without closing the listener, all of it or
        nothing. Raises ConfigError (after logging it) when the new config is invalid or a
        part could not be prepared: the running one stays. Stopping during a stop."""
        await self.lifecycle.reload(self._prepare_reload)

    async def _prepare_reload(self) -> ReloadPlan:
        try:
            new, web_settings = await self._read_config()
        except ConfigError as exc:
            for problem in exc.problems:
                log.error("reload rejected, keeping the running config",
                          extra=kv(problem=problem))
            self._reload_failed()
            raise
        new = self._keep_restart_only(new)
        jobs = built = ssh = None
        try:
            jobs = build_jobs(new, self._jobs, self.config, self.probes,
                              self._collector_state)
            built = [job for job in jobs if self._jobs.get(job.name) is not job]
            ssh = await self.ssh.prepare(new.ssh)
            remediation = self._prepare_remediation(new.remediation)
        except BaseException as exc:
            for job in built or []:
                _close_unused(job)
            if ssh is not None:
                ssh.discard()  # a worker process started for it ends
            if not isinstance(exc, Exception):
                raise
            # Not a config problem: report it as a failed reload rather than lose it.
            log.exception("reload failed while preparing the new config")
            self._reload_failed()
            raise ConfigError([f"reload failed while applying: {exc!r}"]) from exc
        return ReloadPlan(self, new, web_settings, jobs, built, ssh, remediation)

    def _commit(self, plan: ReloadPlan) -> None:
        """The new config, whole: synchronous, so nothing runs between its steps."""
        self.scheduler.apply(plan.jobs)
        self._jobs = {job.name: job for job in plan.jobs}
        plan.ssh.commit()
        plan.remediation.commit()
        self.endpoint.commit(plan.web)
        logging.getLogger().setLevel(plan.config.logging.level.upper())
        self.scheduler.jitter = plan.config.scheduler.jitter
        self.config = plan.config
        self.renderer.target_modules = target_modules(plan.config)
        self._last_reload_ok = True
        self._last_reload_success = time.time()
        self._publish_reload_state()
        log.info("reloaded", extra=kv(collectors=len(plan.jobs)))

    def _reload_failed(self) -> None:
        self._last_reload_ok = False
        self._publish_reload_state()

    async def _read_config(self) -> tuple[Config, WebSettings]:
        """The new config and web config, or ConfigError. A surprise while reading them
        becomes one too, naming only its type: its message or traceback could quote the
        file, password hashes included."""
        try:
            new = await asyncio.to_thread(self.source.load)
            web_settings = await self.endpoint.prepare(new.web.config_file)
        except ConfigError:
            raise
        except Exception as exc:
            raise ConfigError([f"reading the configuration failed: {type(exc).__name__}"]
                              ) from None
        return new, web_settings

    def _keep_restart_only(self, new: Config) -> Config:
        for section, name in RESTART_ONLY:
            old_value = getattr(getattr(self.config, section), name)
            new_section = getattr(new, section)
            if getattr(new_section, name) != old_value:
                log.warning("setting changed but needs a restart, keeping the running value",
                            extra=kv(field=f"{section}.{name}", running=old_value,
                                     configured=getattr(new_section, name)))
                new = new.model_copy(update={
                    section: new_section.model_copy(update={name: old_value})})
        return new

    def _publish_reload_state(self) -> None:
        ok = GaugeMetricFamily("hostagent_config_last_reload_successful",
                               "Whether the last configuration reload succeeded.",
                               value=1.0 if self._last_reload_ok else 0.0)
        when = GaugeMetricFamily("hostagent_config_last_reload_success_timestamp_seconds",
                                 "Unix time of the last successful configuration load.",
                                 value=self._last_reload_success)
        self.registry.publish(Snapshot.of("config", [ok, when]))

    # systemd

    def _status_line(self) -> str:
        statuses = self.scheduler.statuses()
        failing = sum(1 for s in statuses if s.success is False)
        line = f"collecting {len(statuses)} collectors"
        if failing:
            line += f", {failing} failing"
        if (ssh := self.ssh.status()) is not None:
            line += f", {ssh[0]} ssh targets up of {ssh[1]}"
        if not self._last_reload_ok:
            line += ", last reload failed"
        return line

    def _rendered(self) -> None:
        """As each render starts, on the loop: a status-page chart point when the last one is
        web.status_history_step old (points follow the collections; no timer of their own
        wakes the loop). The first point waits for every collector's first run."""
        now = time.monotonic()
        if now - self._history_at >= self.config.web.status_history_step and self.health.ready():
            self._history_at = now
            sample_history(self)

    def _settled(self) -> bool:
        """No snapshot about to follow the last: no collector running, and no SSH targets
        (whose rounds end one by one)."""
        return not self.registry.targets and self.scheduler.settled()

    async def _announce(self) -> None:
        """READY=1 once started and every collector has completed once (unless a stop or a
        reload came first: a reload says READY=1 when it ends); then a STATUS= line whenever
        it changes."""
        while not self.health.ready() or self.lifecycle.state is State.STARTING:
            await asyncio.sleep(0.02)
        last = self._status_line()
        self.lifecycle.announce_ready()
        loop = asyncio.get_running_loop()
        if not self.notifier.enabled:  # no systemd to tell: no timer waking the loop for it
            await loop.create_future()
        while True:
            await asyncio.sleep(grid_delay(loop.time(), 5.0))
            if (line := self._status_line()) != last:
                self.notifier.status(line)
                last = line

    async def _watchdog(self, interval: float, watched: list[asyncio.Task[None]]) -> None:
        """Ping only while the loop turns (this task runs), the scheduler makes progress and
        the other background tasks (the renderer above all) are still running. The SSH
        worker's process is not the watchdog's: the supervisor kills one that stops answering
        and starts another, where a restart of the agent would drop every collector too."""
        withheld = False
        while True:
            await asyncio.sleep(interval)
            if self.scheduler.alive() and not any(task.done() for task in watched):
                self.notifier.watchdog()
                withheld = False
            elif not withheld:
                log.error("scheduler or renderer stalled, withholding the watchdog ping")
                withheld = True


class ReloadPlan:
    """A reload prepared in full (see agent.lifecycle): the new config, its web settings,
    jobs (built: the ones made for it), and the SSH and remediation changes."""

    def __init__(self, agent: Agent, config: Config, web_settings: WebSettings,
                 jobs: list[Job], built: list[Job], ssh: SshPlan,
                 remediation: RemediationPlan | _NoRules) -> None:
        self.agent = agent
        self.config = config
        self.web = web_settings
        self.jobs = jobs
        self.built = built
        self.ssh = ssh
        self.remediation = remediation

    def commit(self) -> None:
        self.agent._commit(self)

    def discard(self) -> None:
        for job in self.built:
            _close_unused(job)
        self.ssh.discard()
        self.remediation.discard()

    async def retire(self) -> None:
        await self.ssh.retire()
        await self.remediation.retire()


class _NoRules:
    """The remediation plan while no rule was ever configured: publishes the families an
    engine without rules publishes (no samples), without loading the engine."""

    def __init__(self, agent: Agent) -> None:
        self._agent = agent

    def commit(self) -> None:
        self._agent._publish_remediation(Counters().families())

    def discard(self) -> None:
        pass

    async def retire(self) -> None:
        pass


def _close_unused(job: Job) -> None:
    """A collector built for a reload that did not happen releases what it holds."""
    close = getattr(job.collector, "close", None)
    if close is not None:
        close()


def _format_address(address: object) -> str:
    if isinstance(address, tuple):
        host, port = address[0], address[1]
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return str(address)
