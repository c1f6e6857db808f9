"""Online RL: the policy learns from its own samples, scored by reward models, kept near a reference.

One loop serves every online algorithm; an algorithm plugs in what is its own:

- `loop`: the run -- set-up, resume, each step (rollout -> experience -> update -> logging,
  evaluation, checkpoint), the end report -- and `OnlineAlgorithm`, what an algorithm plugs in;
- `rollout`: sampling with the policy and scoring with the reward models (and held-out evaluation);
- `experience`: a rollout turned into an `Experience`: log-probs of the policy and the reference,
  shaped scores, per-token KL-shaped rewards, then the algorithm's advantages;
- `advantages`: the advantage-estimator seam (`AdvantageEstimator`: ``needs_value`` and
  rewards -> advantages, returns). PPO's GAE over a value model is its one implementation today;
  critic-free estimators (GRPO, RLOO, REINFORCE++) plug in here on the same rollout loop;
- `models`: the policy, reference, value and reward roles on one shared base;
- `distributed`: data parallelism through accelerate;
- `config`: the options (`PPOConfig`);
- `ppo`: PPO, the one algorithm today: GAE, the clipped policy and value losses, `run_ppo`.
"""
