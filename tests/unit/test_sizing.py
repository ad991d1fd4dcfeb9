"""Workers sized from the cores: the pool, its size, the batch and the model's threads; an explicit
setting wins; every way a worker starts gets the same sizing."""

from __future__ import annotations

from audiojobs.config import Settings
from audiojobs.local_stack import gpu_worker_cmd, worker_cmd
from audiojobs.sizing import Plan, plan, sized

ALL = ["audio_control", "audio_cpu", "audio_gpu"]


def test_a_worker_that_transcribes_batches_in_one_process_of_threads() -> None:
    s = Settings.from_env({})
    assert plan(s, ["audio_gpu"], gpus=1, cpu_count=16) == Plan("threads", 8, 8, 16)  # 8 on CUDA
    cpu = Settings.from_env({"AUDIO_TRANSCRIBE_BATCH_MAX": "4"})  # asked for on the CPU
    assert plan(cpu, ALL, cpu_count=2) == Plan("threads", 6, 4, 2)  # 4 batch slots + one thread per core
    assert plan(cpu, ALL, cpu_count=16) == Plan("threads", 20, 4, 16)
    assert plan(cpu, ["audio_gpu"], cpu_count=2) == Plan("threads", 4, 4, 2)  # transcription only


def test_on_the_cpu_the_default_is_one_single_threaded_process_per_core() -> None:
    """Measured best on the CPU (scripts/bench part c): no batching, processes x 1 thread."""
    s = Settings.from_env({})
    assert plan(s, ALL, cpu_count=2) == Plan("prefork", 2, 1, 1)
    assert plan(s, ["audio_gpu"], cpu_count=4) == Plan("prefork", 4, 1, 1)


def test_a_worker_that_does_not_transcribe_is_prefork_one_process_per_core() -> None:
    s = Settings.from_env({})
    assert plan(s, ["audio_control", "audio_cpu"], cpu_count=4) == Plan("prefork", 4, 1, 1)
    # openai-whisper decodes one job at a time: one process per core, the cores shared out.
    pt = Settings.from_env({"AUDIO_WHISPER_BACKEND": "openai-whisper"})
    assert plan(pt, ALL, cpu_count=4) == Plan("prefork", 4, 1, 1)
    # Batching off: processes x threads <= cores.
    off = Settings.from_env({"AUDIO_TRANSCRIBE_BATCH_MAX": "1"})
    assert plan(off, ALL, cpu_count=8) == Plan("prefork", 8, 1, 1)
    assert plan(off, ALL, concurrency=2, cpu_count=8) == Plan("prefork", 2, 1, 4)


def test_explicit_settings_win() -> None:
    s = Settings.from_env({"AUDIOJOBS_WORKER_CONCURRENCY": "3", "AUDIO_WHISPER_CPU_THREADS": "1",
                           "AUDIO_TRANSCRIBE_BATCH_MAX": "8"})
    assert plan(s, ALL, cpu_count=2) == Plan("threads", 3, 3, 1)  # never a batch larger than the threads
    assert plan(s, ALL, concurrency=12, cpu_count=2) == Plan("threads", 12, 8, 1)  # -c beats the setting
    # One thread cannot batch: such a worker runs prefork, as before batching.
    on = Settings.from_env({"AUDIO_TRANSCRIBE_BATCH_MAX": "4"})
    assert plan(on, ALL, concurrency=1, cpu_count=2) == Plan("prefork", 1, 1, 2)


def test_the_worker_process_fills_in_what_the_machine_decides() -> None:
    """Inside the worker (celery_app's worker_init), whatever started it: the same numbers."""
    s = Settings.from_env({})
    threads = sized(Settings.from_env({"AUDIO_TRANSCRIBE_BATCH_MAX": "4"}), "threads", 6, cpu_count=2)
    assert (threads.transcribe_batch_max, threads.whisper_cpu_threads) == (4, 2)
    assert sized(s, "threads", 6, cpu_count=2).transcribe_batch_max == 1  # the CPU: off unless asked
    prefork = sized(s, "prefork", 2, cpu_count=2)
    assert (prefork.transcribe_batch_max, prefork.whisper_cpu_threads) == (1, 1)
    small = sized(Settings.from_env({"AUDIO_TRANSCRIBE_BATCH_MAX": "16"}), "threads", 3, cpu_count=2)
    assert small.transcribe_batch_max == 3


def test_commands_carry_the_plan() -> None:
    s = Settings.from_env({"REDIS_URL": "redis://127.0.0.1:1/0", "AUDIO_TRANSCRIBE_BATCH_MAX": "4"})
    cmd = worker_cmd(s, hostname="w@%h")
    assert cmd[cmd.index("-P") + 1] == "custom"  # threads_pool.py
    default = worker_cmd(Settings.from_env({"REDIS_URL": "redis://127.0.0.1:1/0"}), hostname="w@%h")
    assert default[default.index("-P") + 1] == "prefork"
    cpu_only = worker_cmd(s, hostname="w@%h", queues="audio_control,audio_cpu")
    assert cpu_only[cpu_only.index("-P") + 1] == "prefork"
    gpu = gpu_worker_cmd(Settings.from_env({"REDIS_URL": "redis://127.0.0.1:1/0"}), ("0",))
    assert gpu[gpu.index("-P") + 1] == "custom" and gpu[gpu.index("-c") + 1] == "8"  # a GPU: batching
    off = gpu_worker_cmd(Settings.from_env({"AUDIO_TRANSCRIBE_BATCH_MAX": "1"}), ("0", "1"))
    assert off[off.index("-P") + 1] == "prefork" and off[off.index("-c") + 1] == "2"  # one process per GPU
