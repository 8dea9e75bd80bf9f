"""Benchmark: our PPO against TRL 1.12.0's experimental PPO, same models, prompts, settings.

    .venv/bin/python bench/ppo.py [--episodes 640]

Setup (once, under bench/.scratch/ppo): the tiny Llama policy, pretrained for a few seconds so
it writes word-like text; a reward model trained on the synthetic preference (more "helpful"
is better), which a tiny policy can learn to please; 64 short prompts. TRL 1.12.0 is installed
into its own virtualenv under bench/.scratch (TRL removed PPO in 1.13). Then, each in a fresh
process: ours with LoRA and without, TRL's with LoRA and without; batch 16, 2 mini-batches,
2 PPO epochs, KL coefficient 0.05, clip 0.2, 16 response tokens, temperature 1, 2 threads.
Prints one table (mean reward of the first and last 5 steps, KL, seconds per step, peak RSS)
and writes the reward curves to bench/results/ppo_reward.svg.
"""

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRATCH = ROOT / "bench" / ".scratch"
WORK = SCRATCH / "ppo"
TRL_VENV = SCRATCH / "trl112"
sys.path.insert(0, str(ROOT))

SETTINGS = {"batch_size": 16, "mini_batch_size": 8, "ppo_epochs": 2, "learning_rate": 3e-3,
            "kl_coef": 0.05, "clip_range": 0.2, "vf_coef": 0.1, "response_length": 16,
            "temperature": 1.0, "missing_eos_penalty": 1.0, "seed": 0}


def setup() -> dict:
    from training.ml.config import RewardTrainingConfig
    from training.ml.progress import RecordingReporter
    from training.ml.reward import train_reward_model
    from training.ml.synthetic import policy_prompts, preference_rows, write_rows
    from training.ml.tiny import build_tiny_models, pretrain_tiny_policy

    paths = {"policy": WORK / "tiny" / "policy", "reward": WORK / "rm" / "model",
             "prompts": WORK / "prompts.jsonl"}
    if not (paths["reward"] / "config.json").is_file():
        models = build_tiny_models(WORK / "tiny")
        pretrain_tiny_policy(models["policy"])
        pairs = write_rows(WORK / "pairs.jsonl", preference_rows(200, k=4, seed=1))
        train_reward_model(RewardTrainingConfig(
            base_model=str(models["reward"]), train_file=str(pairs), output_dir=str(WORK / "rm"),
            epochs=2, batch_size=24, learning_rate=3e-3, checkpoint_every=0), RecordingReporter())
        write_rows(paths["prompts"], policy_prompts(64, seed=9))
    return {name: str(path) for name, path in paths.items()}


def trl_python() -> Path:
    python = TRL_VENV / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(TRL_VENV)], check=True)
        pip = [str(TRL_VENV / "bin" / "pip"), "install", "--quiet"]
        subprocess.run([*pip, "torch==2.13.0"], check=True)  # the local CPU build first
        subprocess.run([*pip, "trl==1.12.0", "transformers", "peft", "datasets", "accelerate",
                        "requests"], check=True)
    return python


def ours(paths: dict, episodes: int, lora: bool) -> dict:
    """Child process: our PPO; prints {steps: [...], peak_rss_mb}."""
    import resource

    from training.ml.policy import PolicyTrainingConfig
    from training.ml.ppo import train_policy
    from training.ml.progress import RecordingReporter

    config = PolicyTrainingConfig(
        policy=paths["policy"], reward_model=paths["reward"], prompts_file=paths["prompts"],
        output_dir=str(WORK / f"ours-{'lora' if lora else 'full'}"), total_episodes=episodes,
        lora=lora, checkpoint_every=0, threads=2, eval_samples=0,
        **SETTINGS)
    reporter = RecordingReporter()
    train_policy(config, reporter)
    return {"steps": [{"reward": m["reward"], "kl": m["kl"], "seconds": m["seconds"]}
                      for _, _, m in reporter.steps],
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def run(command: list[str]) -> dict:
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "TRL_EXPERIMENTAL_SILENCE": "1",
           "OMP_NUM_THREADS": "2"}
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT)
    if done.returncode:
        sys.exit(f"{command[1]} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def summary(name: str, result: dict) -> str:
    steps = result["steps"]
    first = sum(s["reward"] for s in steps[:5]) / 5
    last = sum(s["reward"] for s in steps[-5:]) / 5
    kl = sum(s["kl"] for s in steps[-5:]) / 5
    seconds = sorted(s["seconds"] for s in steps[1:])[len(steps[1:]) // 2]  # median, not step 1
    return (f"{name:<22} | {len(steps):>5} | {first:>11.3f} | {last:>10.3f} | {kl:>9.2f} | "
            f"{seconds:>8.3f} | {result['peak_rss_mb']:>8.0f}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--episodes", type=int, default=640)
    parser.add_argument("--child", choices=("lora", "full"))
    parser.add_argument("--paths")
    args = parser.parse_args()
    if args.child:
        print(json.dumps(ours(json.loads(args.paths), args.episodes, args.child == "lora")))
        return
    paths = setup()
    python = trl_python()
    results = {}
    for lora in (True, False):
        kind = "lora" if lora else "full"
        results[f"ours, {kind}"] = run([sys.executable, __file__, "--child", kind, "--paths",
                                        json.dumps(paths), "--episodes", str(args.episodes)])
        trl_settings = {**SETTINGS, **paths, "lora": lora, "total_episodes": args.episodes,
                        "out": str(WORK / f"trl-{kind}")}
        results[f"TRL 1.12, {kind}"] = run([str(python), str(ROOT / "bench" / "ppo_trl112.py"),
                                            json.dumps(trl_settings)])
    print(f"PPO, tiny Llama policy and reward model, {args.episodes} episodes, "
          f"settings {SETTINGS}")
    print(f"{'run':<22} | steps | reward 1-5 | reward -5: | KL at end | s/step | peak MB")
    for name, result in results.items():
        print(summary(name, result))
    write_plot(results)


def write_plot(results: dict) -> None:
    from annotate.charts import line_chart

    series = {name: [[n + 1, s["reward"]] for n, s in enumerate(result["steps"])]
              for name, result in results.items() if name.endswith("lora")}
    out = ROOT / "bench" / "results" / "ppo_reward.svg"
    out.parent.mkdir(exist_ok=True)
    svg = line_chart(series, title="Mean reward per PPO step (LoRA), ours vs TRL 1.12")
    # A file on its own: the page's stylesheet is not there, so the styles go inside.
    style = ("<style>.line{fill:none;stroke-width:2}.series-0{stroke:#2f5bea}"
             ".series-1{stroke:#d97706}text{font:12px sans-serif;fill:#5b6478;stroke:none}"
             ".title{font-size:15px;fill:#1d2433}.axis{stroke:#d9dee8}"
             "text.series-0,text.series-1{stroke:none}</style>")
    head, rest = svg.split(">", 1)
    out.write_text(f'{head} style="background:#fff">{style}{rest}')
    print(f"reward curves: {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
