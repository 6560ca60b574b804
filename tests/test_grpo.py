"Checks of r1_ref.grpo against an independent, loop-by-loop implementation and finite differences."
import math
import pytest
import torch
from r1_ref.grpo import group_advantages, grpo_loss, grpo_sequence_loss, aggregate, k3_kl, LOSS_TYPES


def naive_advantages(rewards, G):
    "Python-loop advantages: sample std over the judged rewards of each group, 0 for unjudged ones."
    out = []
    for g in range(0, len(rewards), G):
        grp = rewards[g:g + G]
        ok = [r for r in grp if r is not None]
        mean = sum(ok) / len(ok) if ok else 0.0
        std = math.sqrt(sum((r - mean) ** 2 for r in ok) / (len(ok) - 1)) if len(ok) > 1 else 0.0
        out += [0.0 if r is None else (r - mean) / (std + 1e-4) for r in grp]
    return out


def naive_loss(logps, old, adv, mask, ref, beta, eps_lo, eps_hi, loss_type, L):
    "The GRPO loss written token by token with Python loops and scalar torch ops."
    B, T = logps.shape
    seq_losses, total, ntok = [], 0.0, 0
    for i in range(B):
        s, n = 0.0, 0
        for t in range(T):
            if mask[i, t] == 0: continue
            rho = torch.exp(logps[i, t] - old[i, t])
            a = adv[i]
            obj = torch.minimum(rho * a, torch.clamp(rho, 1 - eps_lo, 1 + eps_hi) * a)
            d = ref[i, t] - logps[i, t]
            s = s + (-obj + beta * (torch.exp(d) - d - 1))
            n += 1
        seq_losses.append(s / max(n, 1))
        total = total + s
        ntok += n
    if loss_type == "grpo": return sum(seq_losses) / B
    if loss_type == "dapo": return total / ntok
    return total / (B * L)


def random_batch(seed, B=6, T=7, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(B, T, 5, generator=g, dtype=dtype)
    tok = torch.randint(0, 5, (B, T), generator=g)
    lp = lambda x: x.log_softmax(-1).gather(2, tok[..., None])[..., 0]
    old = lp(logits + 0.3 * torch.randn(B, T, 5, generator=g, dtype=dtype))
    ref = lp(logits + 0.3 * torch.randn(B, T, 5, generator=g, dtype=dtype))
    lens = torch.randint(1, T + 1, (B,), generator=g)
    mask = (torch.arange(T)[None] < lens[:, None]).long()
    rewards = torch.randint(0, 2, (B,), generator=g).double()
    return logits.requires_grad_(), tok, old, ref, mask, rewards


def test_advantages_match_naive():
    rewards = [1., 0., None, 0.5, 2., 2., 2., 2., None, None, 3., None]
    got = group_advantages(rewards, 4)
    want = naive_advantages(rewards, 4)
    assert torch.allclose(got, torch.tensor(want, dtype=torch.float32), atol=1e-5)
    assert not torch.isnan(got).any()


@pytest.mark.parametrize("loss_type", LOSS_TYPES)
@pytest.mark.parametrize("eps_hi", [None, 0.28])
def test_loss_and_grad_match_naive_loop(loss_type, eps_hi):
    logits, tok, old, ref, mask, rewards = random_batch(0)
    adv = group_advantages(rewards, 3).double()
    lp = lambda: logits.log_softmax(-1).gather(2, tok[..., None])[..., 0]
    loss, stats = grpo_loss(lp(), old, adv, mask, ref, beta=0.04, epsilon=0.2, epsilon_high=eps_hi,
                            loss_type=loss_type, max_completion_length=9)
    g_vec, = torch.autograd.grad(loss, logits)
    want = naive_loss(lp(), old, adv, mask, ref, 0.04, 0.2, eps_hi or 0.2, loss_type, 9)
    g_loop, = torch.autograd.grad(want, logits)
    assert torch.allclose(loss, want, atol=1e-10)
    assert torch.allclose(g_vec, g_loop, atol=1e-10)
    assert g_vec.abs().sum() > 0
    assert 0 < stats["clip"] < 1  # the random batch has clipped and unclipped tokens


@pytest.mark.parametrize("loss_type", LOSS_TYPES)
def test_gradcheck_finite_differences(loss_type):
    _, _, old, ref, mask, rewards = random_batch(1, B=4, T=4)
    adv = group_advantages(rewards, 2).double()
    lp0 = old + 0.05 * torch.randn(old.shape, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    f = lambda x: grpo_loss(x, old, adv, mask, ref, beta=0.1, epsilon=0.3, loss_type=loss_type)[0]
    assert torch.autograd.gradcheck(f, (lp0.clone().requires_grad_(),), eps=1e-6, atol=1e-5)


def test_micro_batches_add_up_to_full_batch_gradient():
    logits, tok, old, ref, mask, rewards = random_batch(3)
    adv = group_advantages(rewards, 3).double()
    lp = lambda sl: logits[sl].log_softmax(-1).gather(2, tok[sl][..., None])[..., 0]
    for lt in LOSS_TYPES:
        full, = torch.autograd.grad(grpo_loss(lp(slice(None)), old, adv, mask, ref, beta=0.01, loss_type=lt)[0], logits)
        acc = torch.zeros_like(logits)
        for sl in (slice(0, 2), slice(2, 6)):
            l, _ = grpo_loss(lp(sl), old[sl], adv[sl], mask[sl], ref[sl], beta=0.01, loss_type=lt,
                             max_completion_length=mask.shape[1], num_seqs=6, num_tokens=mask.sum())
            acc += torch.autograd.grad(l, logits)[0]
        assert torch.allclose(acc, full, atol=1e-12), lt


def test_k3_nonnegative_and_zero_at_equality():
    x = torch.randn(1000, dtype=torch.float64)
    y = torch.randn(1000, dtype=torch.float64)
    assert (k3_kl(x, y) >= 0).all()
    assert torch.equal(k3_kl(x, x), torch.zeros_like(x))


def test_sequence_loss_equals_token_loss_for_one_token_completions():
    logits, tok, old, ref, mask, rewards = random_batch(4, T=1)
    lp = logits.log_softmax(-1).gather(2, tok[..., None])[..., 0]
    adv = group_advantages(rewards, 2).double()
    a = grpo_sequence_loss(lp, old, adv, mask, ref, beta=0.01, epsilon=0.2)
    b, _ = grpo_loss(lp, old, adv, mask, ref, beta=0.01, epsilon=0.2)
    assert torch.allclose(a, b)


def test_bad_inputs_name_the_argument():
    lp = torch.zeros(4, 3); m = torch.ones(4, 3); a = torch.zeros(4)
    cases = [
        (lambda: grpo_loss(lp, torch.zeros(4, 2), a, m), "old_logps"),
        (lambda: grpo_loss(lp, lp, a, torch.ones(3, 3)), "mask"),
        (lambda: grpo_loss(lp, lp, a, m, torch.zeros(4, 4), beta=0.1), "ref_logps"),
        (lambda: grpo_loss(lp, lp, torch.zeros(3), m), "advantages"),
        (lambda: grpo_loss(lp, lp, a, m, loss_type="sum"), "loss_type"),
        (lambda: grpo_loss(torch.zeros(4), torch.zeros(4), a, torch.ones(4)), "logps"),
        (lambda: group_advantages([1., 0., 1.], 2), "group_size"),
        (lambda: group_advantages([1., 0.], 0), "group_size"),
        (lambda: group_advantages([1., 0.], 2, scale="rank"), "scale"),
        (lambda: aggregate(lp, m, "mean"), "loss_type"),
    ]
    for fn, name in cases:
        with pytest.raises(ValueError, match=name):
            fn()


def test_objectives_agree_on_policy_and_differ_off_policy():
    "clip, gspo and cispo: one gradient at the first inner step; off-policy GSPO clips whole sequences, CISPO none."
    from r1_ref.grpo import OBJECTIVES, register_objective
    torch.manual_seed(1)
    lp0 = torch.randn(3, 6).log_softmax(-1)
    mask = torch.tensor([[1] * 6, [1] * 4 + [0] * 2, [1] * 2 + [0] * 4])
    A = torch.tensor([1.0, -0.5, 0.7])
    def grad(obj, old, eps=0.2):
        lp = lp0.clone().requires_grad_()
        return torch.autograd.grad(grpo_loss(lp, old, A, mask, epsilon=eps, objective=obj)[0], lp)[0]
    g = {o: grad(o, lp0) for o in ("clip", "gspo", "cispo")}
    assert torch.allclose(g["gspo"], g["clip"], atol=1e-7) and torch.allclose(g["cispo"], g["clip"], atol=1e-7)
    old = lp0 - 0.3 * mask                                    # every token's ratio is e^0.3 = 1.35
    gs, ci = grad("gspo", old, 0.2), grad("cispo", old)
    assert gs[[0, 2]].abs().sum() == 0 and gs[1].abs().sum() > 0     # A > 0 and ratio > 1 + eps: whole rows clipped
    assert bool((ci[mask.bool()] != 0).all())                         # CISPO: every real token keeps a gradient
    register_objective("neg_clip", lambda *a: -OBJECTIVES["clip"](*a))
    try: assert torch.allclose(grad("neg_clip", lp0), -g["clip"])
    finally: OBJECTIVES.pop("neg_clip")
    with pytest.raises(ValueError, match="objective"): grpo_loss(lp0, lp0, A, mask, objective="nope")


def test_bnpo_is_not_offered():
    "TRL's bnpo (local-batch token count) would equal dapo here, where normalisers are always the full batch's: refused."
    from r1_ref.trainer import ConfigError, GRPOConfig, check_config
    assert LOSS_TYPES == ("grpo", "dapo", "dr_grpo")
    lp = torch.zeros(2, 3)
    with pytest.raises(ValueError, match=r"loss_type='bnpo' is not one of \('grpo', 'dapo', 'dr_grpo'\)"):
        grpo_loss(lp, lp, torch.zeros(2), torch.ones(2, 3), loss_type="bnpo")
    with pytest.raises(ValueError, match="bnpo"): aggregate(lp, torch.ones(2, 3), "bnpo")
    with pytest.raises(ConfigError, match=r"config key 'loss_type': 'bnpo' is not one of .*'dapo'"):
        check_config(GRPOConfig(loss_type="bnpo"), world=1)


def test_loss_at_first_inner_step_per_loss_type():
    "rho = 1: grpo gives exactly 0 for any lengths; dapo -sum |o_i| A_i / sum |o|; dr_grpo -sum |o_i| A_i / (G L_max)."
    lens = torch.tensor([40, 7, 7, 7])
    mask = (torch.arange(40)[None] < lens[:, None]).long()
    A = group_advantages([1., 0., 0., 0.], 4).double()
    lp = torch.randn(4, 40, dtype=torch.float64).log_softmax(-1)
    got = {lt: grpo_loss(lp, lp, A, mask, loss_type=lt)[0].item() for lt in LOSS_TYPES}
    assert abs(got["grpo"]) < 1e-6                      # 0 up to float32 rounding of the advantages
    assert math.isclose(got["dapo"], -(A * lens).sum().item() / lens.sum().item(), rel_tol=1e-12)
    assert math.isclose(got["dr_grpo"], -(A * lens).sum().item() / (4 * 40), rel_tol=1e-12)
    assert math.isclose(got["dapo"], -0.81, abs_tol=0.01)


def test_k3_loss_term_gradient_on_and_off_policy():
    "E_mu[grad k3] (samples fixed) = grad KL(ref || theta) when mu = pi_theta; biased when mu = pi_old != pi_theta."
    g = torch.Generator().manual_seed(5)
    theta = torch.randn(7, generator=g, dtype=torch.float64, requires_grad=True)
    ref = torch.randn(7, generator=g, dtype=torch.float64).log_softmax(-1)
    def grad(f): return torch.autograd.grad(f(theta.log_softmax(-1)), theta)[0]
    def k3_term(log_mu): return grad(lambda lp: (log_mu.exp() * k3_kl(lp, ref)).sum())
    kl_ref_theta = grad(lambda lp: (ref.exp() * (ref - lp)).sum())
    kl_theta_ref = grad(lambda lp: (lp.exp() * (lp - ref)).sum())
    on = k3_term(theta.detach().log_softmax(-1))
    assert torch.allclose(on, kl_ref_theta, atol=1e-12)
    assert not torch.allclose(on, kl_theta_ref, atol=1e-3)
    old = (theta.detach() + 0.5 * torch.randn(7, generator=g, dtype=torch.float64)).log_softmax(-1)
    assert not torch.allclose(k3_term(old), kl_ref_theta, atol=1e-3)
