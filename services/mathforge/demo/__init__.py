"""`make demo`: the DeepSeekMath recipe in miniature against the five services (see docs/demo.md).

Stages, one module each: web_stage (miniature web, recall), corpus_stage (dedup, decontamination),
training_stage (tokenizer, pretraining, SFT), reward_stage (ORM and PRM), grpo_stage (GRPO with
iterative RL), eval_stage (base / SFT / RL through the evaluator); pipeline runs them in order,
report, plots and checks write and judge the results.
"""
