"""The client commands: ``audiojobs submit | jobs | status | result | cancel`` talk to a running API."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import click

from audiojobs.cli.common import settings_or_exit as _settings
from audiojobs.jobs.states import FINAL_STATUS_VALUES


def _client(server: str | None, api_key: str | None) -> Any:
    from audiojobs.client import Client
    from audiojobs.local_secrets import api_key_path, read_secret

    settings = _settings()
    url = server or settings.server_url or f"http://{settings.api_host}:{settings.api_port}"
    key = api_key or settings.api_key or read_secret(api_key_path(settings.var_path))
    if not key:
        raise click.ClickException("no API key: pass --api-key or set AUDIOJOBS_API_KEY")
    return Client(url, key)


def _client_options(fn: Any) -> Any:
    fn = click.option("--api-key", default=None, help="API key (AUDIOJOBS_API_KEY, else var/api_key).")(fn)
    return click.option("--server", default=None, help="API base URL (AUDIOJOBS_SERVER).")(fn)


def _call(action: Any) -> Any:
    from audiojobs.client import ClientError

    try:
        return action()
    except ClientError as exc:
        raise click.ClickException(exc.message) from None


SUFFIXES = {"srt": ".srt", "vtt": ".vtt", "text": ".txt", "json": ".json", "verbose_json": ".json",
            "diarized_json": ".json"}
RESULT_FORMATS = click.Choice(list(SUFFIXES))


def _write_result(text: str, fmt: str, output: str | None) -> None:
    if output:
        Path(output).write_text(text)
        click.echo(f"written: {output}", err=True)
    else:
        click.echo(text, nl=not text.endswith("\n"))


@click.command()
@click.argument("sources", nargs=-1, required=True, metavar="FILE_OR_URL...")
@click.option("--wait", is_flag=True, help="Show progress until the jobs end, then print or write the results.")
@click.option("--format", "fmt", type=RESULT_FORMATS, default="text", show_default=True,
              help="Result format with --wait.")
@click.option("-o", "--output", default=None, help="Write the result here (one source only; default: FILE with the "
                                                   "format's suffix for srt/vtt, else standard output).")
@click.option("--model", default=None, help="Model (default: whisper-1).")
@click.option("--language", default=None, help="Spoken language code, e.g. en.")
@click.option("--word-timestamps", is_flag=True, help="Time every word.")
@click.option("--diarize", is_flag=True, help="Tell the speakers apart (the text result is one line per turn).")
@click.option("--speakers", type=int, default=None, help="With --diarize: exactly this many speakers.")
@click.option("--min-speakers", type=int, default=None, help="With --diarize: at least this many (default 1).")
@click.option("--max-speakers", type=int, default=None, help="With --diarize: at most this many (default 8).")
@_client_options
def submit(sources: tuple[str, ...], wait: bool, fmt: str, output: str | None, model: str | None,
           language: str | None, word_timestamps: bool, diarize: bool, speakers: int | None,
           min_speakers: int | None, max_speakers: int | None, server: str | None, api_key: str | None) -> None:
    """Submit FILE_OR_URL: a URL, or a file. A file the server can read in place (it runs on this
    machine and the file is inside its AUDIO_LOCAL_ROOTS) is sent as local_path; any other is uploaded.
    Several at once are one batch (POST /jobs/batch), with a progress line per job under --wait."""
    if output is not None and len(sources) > 1:
        raise click.UsageError("-o takes one source; with several, srt and vtt go beside each FILE")
    client = _client(server, api_key)
    options: dict[str, Any] = {name: value for name, value in (("model", model), ("language", language)) if value}
    if word_timestamps:
        options["word_timestamps"] = True
    if diarize:
        options["diarize"] = True
    counts = (("speakers", speakers), ("min_speakers", min_speakers), ("max_speakers", max_speakers))
    options.update({name: value for name, value in counts if value is not None})  # the server checks them
    if len(sources) == 1:
        made = [_call(lambda: _submit(client, sources[0], options))]
    else:
        made = _call(lambda: _submit_many(client, list(sources), options))
    for job in made:
        click.echo(f"job {job['id']} {job['status']}", err=True)
    if not wait:
        click.echo("\n".join(str(job["id"]) for job in made))
        return
    finals = _follow_all(client, [int(job["id"]) for job in made])
    for source, final in zip(sources, finals, strict=True):
        if final["status"] != "completed":
            continue
        target = output
        if target is None and fmt in {"srt", "vtt"} and "://" not in source:
            target = str(Path(source).with_suffix(SUFFIXES[fmt]).name)
        elif target is None and len(sources) > 1:
            click.echo(f"==> {source} <==")
        _write_result(_call(lambda job_id=int(final["id"]): client.result(job_id, fmt)), fmt, target)
    failed = [final for final in finals if final["status"] != "completed"]
    if failed:
        raise click.ClickException("; ".join(f"job {f['id']} {f['status']}: {f['error_code']}: {f['error_message']}"
                                             for f in failed))


def _submit_many(client: Any, sources: list[str], options: dict[str, Any]) -> list[dict[str, Any]]:
    """One batch when the server can take every source as a URL or in place; else one by one (the
    files it cannot read are uploaded)."""
    from audiojobs.client import ClientError

    local = urlsplit(client.server).hostname in LOOPBACK
    if local or all("://" in source for source in sources):
        items = [{"url": source} if "://" in source else {"local_path": str(Path(source).resolve())}
                 for source in sources]
        try:
            batch = client.batch(items, options)
            click.echo(f"batch {batch['batch_id']}: {len(batch['jobs'])} jobs", err=True)
            return list(batch["jobs"])
        except ClientError as refusal:
            if refusal.code != "local_path_forbidden":
                raise
    return [_submit(client, source, options) for source in sources]


LOOPBACK = {"127.0.0.1", "localhost", "::1", "[::1]"}


def _submit(client: Any, source: str, options: dict[str, Any]) -> dict[str, Any]:
    from audiojobs.client import ClientError

    if "://" in source:
        return dict(client.submit({"url": source, **options}))
    path = Path(source).resolve()
    if not path.is_file():
        raise ClientError(f"{source}: no such file")
    if urlsplit(client.server).hostname in LOOPBACK:
        try:
            return dict(client.submit({"local_path": str(path), **options}))
        except ClientError as refusal:
            if refusal.code != "local_path_forbidden":
                raise
    click.echo(f"uploading {path.name} ({path.stat().st_size / 1e6:.1f} MB)", err=True)
    return dict(client.upload(path, options))


def _follow_all(client: Any, job_ids: list[int]) -> list[dict[str, Any]]:
    """Poll the jobs until all end: one progress bar per job on a terminal, else one line per change."""
    if len(job_ids) == 1:
        return [_follow(client, job_ids[0])]
    import time

    from tqdm import tqdm

    interactive = sys.stderr.isatty()
    bars = [tqdm(total=100, position=i, bar_format="{desc} {bar} {n:.0f}%", file=sys.stderr, disable=not interactive)
            for i in range(len(job_ids))]
    last: dict[int, tuple[Any, ...]] = {}
    finals: dict[int, dict[str, Any]] = {}
    try:
        while len(finals) < len(job_ids):
            for bar, job_id in zip(bars, job_ids, strict=True):
                if job_id in finals:
                    continue
                job: dict[str, Any] = _call(lambda j=job_id: client.job(j))
                state = (job["status"], job["stage"], job["progress"])
                if state != last.get(job_id):
                    last[job_id] = state
                    line = f"job {job_id} {job['status']}: {job['stage'] or ''} {job['progress']:g}%"
                    if interactive:
                        bar.set_description_str(line.rsplit(" ", 1)[0])
                        bar.n = job["progress"]
                        bar.refresh()
                    else:
                        click.echo(line, err=True)
                if job["status"] in FINAL_STATUS_VALUES:
                    finals[job_id] = job
            time.sleep(0.5)
    finally:
        for bar in bars:
            bar.close()
    return [finals[job_id] for job_id in job_ids]


def _follow(client: Any, job_id: int) -> dict[str, Any]:
    """Poll the job until it ends: a progress bar across the stages on a terminal, else one line per
    change (status, stage or progress)."""
    import time

    from tqdm import tqdm

    interactive = sys.stderr.isatty()
    last: tuple[Any, ...] | None = None
    with tqdm(total=100, bar_format="{desc} {bar} {n:.0f}% [{elapsed}{postfix}]", file=sys.stderr,
              disable=not interactive) as bar:
        while True:
            job: dict[str, Any] = _call(lambda: client.job(job_id))
            state = (job["status"], job["stage"], job["progress"])
            if state != last:
                last = state
                eta = f", eta {job['eta_seconds']:.0f} s" if job.get("eta_seconds") else ""
                if interactive:
                    bar.set_description_str(f"job {job_id} {job['status']}: {job['stage'] or ''}")
                    bar.set_postfix_str(eta.lstrip(", "), refresh=False)
                    bar.n = job["progress"]
                    bar.refresh()
                else:
                    click.echo(f"job {job_id} {job['status']}: {job['stage'] or ''} {job['progress']:g}%{eta}",
                               err=True)
            if job["status"] in FINAL_STATUS_VALUES:
                return job
            time.sleep(0.5)


@click.command()
@click.argument("job_id", type=int)
@_client_options
def status(job_id: int, server: str | None, api_key: str | None) -> None:
    """Show job JOB_ID: status, stage, progress, error."""
    job = _call(lambda: _client(server, api_key).job(job_id))
    click.echo(f"job {job['id']}: {job['status']} stage={job['stage']} progress={job['progress']:g}%"
               + (f" eta={job['eta_seconds']:.0f}s" if job.get("eta_seconds") else "")
               + (f" error={job['error_code']}: {job['error_message']}" if job["error_code"] else ""))


@click.command()
@click.argument("job_id", type=int)
@click.option("--format", "fmt", type=RESULT_FORMATS, default="text", show_default=True)
@click.option("-o", "--output", default=None, help="Write to this file instead of standard output.")
@_client_options
def result(job_id: int, fmt: str, output: str | None, server: str | None, api_key: str | None) -> None:
    """Print (or write) the result of job JOB_ID in a format."""
    _write_result(_call(lambda: _client(server, api_key).result(job_id, fmt)), fmt, output)


@click.command()
@click.argument("job_id", type=int)
@_client_options
def cancel(job_id: int, server: str | None, api_key: str | None) -> None:
    """Cancel job JOB_ID."""
    job = _call(lambda: _client(server, api_key).cancel(job_id))
    click.echo(f"job {job['id']}: {job['status']}")


@click.command()
@click.option("--status", "status_", default=None, help="Only jobs in this status (queued, processing, completed, "
                                                        "failed, cancelled).")
@click.option("--since", default=None, help="Only jobs created at or after this time (ISO 8601; UTC by default).")
@click.option("--limit", type=click.IntRange(1, 200), default=20, show_default=True, help="Jobs per page.")
@click.option("--all", "all_pages", is_flag=True, help="Every page, not only the newest.")
@click.option("--owner", default=None, help="Another user's jobs (admins).")
@_client_options
def jobs(status_: str | None, since: str | None, limit: int, all_pages: bool, owner: str | None,
         server: str | None, api_key: str | None) -> None:
    """Your jobs, newest first, as a table."""
    client = _client(server, api_key)
    rows: list[dict[str, Any]] = []
    cursor = None
    while True:
        page = _call(lambda after=cursor: client.jobs(status=status_, created_after=since, limit=limit,
                                                      cursor=after, owner_user_id=owner))
        rows += page["jobs"]
        cursor = page["next_cursor"]
        if cursor is None or not all_pages:
            break
    click.echo(jobs_table(rows))
    if cursor is not None:
        click.echo(f"(newest {len(rows)}; --all for every page)", err=True)


def _source(job: dict[str, Any]) -> str:
    payload = job.get("payload") or {}
    upload = payload.get("upload") or {}
    return str(payload.get("url") or Path(payload.get("local_path") or "").name or upload.get("filename") or "")


def jobs_table(rows: list[dict[str, Any]]) -> str:
    """Jobs as aligned columns: id, status, stage, progress, priority, created (UTC), source, error."""
    header = ("ID", "STATUS", "STAGE", "PROGRESS", "PRIORITY", "CREATED (UTC)", "SOURCE", "ERROR")
    lines = [header] + [
        (str(job["id"]), job["status"], job["stage"] or "", f"{job['progress']:g}%", str(job["priority"]),
         (job["created_at"] or "")[:19].replace("T", " "), _source(job)[:48], job["error_code"] or "")
        for job in rows]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
                     for line in lines)


COMMANDS = (submit, jobs, status, result, cancel)
