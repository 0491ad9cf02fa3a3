"""litellm's import (seconds) starts in the background as soon as calls are sure to come,
and never for a warm rerun, which must not pay for an import it does not use."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from lpo_ci.cache import ResponseCache

PROBE = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    import lpo_ci.llm as llm
    from lpo_ci.runner import Session
    from lpo_ci.spec import load_settings

    session = Session(load_settings(Path(sys.argv[1]), {"cache_dir": sys.argv[2]}), use_git=False)
    assert llm._import_thread is None  # a session alone (pytest --lpo, no template yet) imports nothing
    session.expect_calls()  # a template was found
    started = llm._import_thread is not None
    if started:
        llm.import_litellm()  # waits for the background import, then finds it done
    print(started, "litellm" in sys.modules)
""")


def probe(project: Path, cache: Path) -> str:
    result = subprocess.run([sys.executable, "-c", PROBE, str(project), str(cache)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_an_empty_cache_starts_the_import_and_a_warm_one_does_not(tmp_path):
    (tmp_path / "pyproject.toml").write_text("[tool.lpo_ci]\n")
    assert probe(tmp_path, tmp_path / "empty") == "True True"

    warm = ResponseCache(tmp_path / "warm")
    warm.put("a" * 64, {"text": "True"})
    warm.close()
    assert probe(tmp_path, tmp_path / "warm") == "False False"


def test_a_cache_miss_starts_the_import(tmp_path):
    code = textwrap.dedent("""
        import sys
        import lpo_ci.llm as llm
        from lpo_ci.cache import ResponseCache, cache_key
        from lpo_ci.llm import ModelClient, ModelParams

        cache = ResponseCache(sys.argv[1])
        client = ModelClient(ModelParams(model="openai/fake"), cache=cache)
        cache.put(cache_key(client.params.request("known")), {"text": "x"})
        client.prefetch(["known"])
        print(llm._import_thread is not None, end=" ")
        client.prefetch(["known", "new"])
        print(llm._import_thread is not None)
    """)
    result = subprocess.run([sys.executable, "-c", code, str(tmp_path / "c")], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False True"
