"Synthetic tasks from the exported package: reproducibility, targets recomputed independently, distributions, bad input, devices."
import math
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from adaptive_rnn.tasks import (adding_task, frequency_task, parity_task, addition_task, addition_loss, addition_accuracy,
                                addition_width, digit_classes, solved, SOLVED_CRITERIA, ADDING_TARGET_VAR, IGNORE_INDEX,
                                ADDITION_END, ADDITION_CLASSES, as_device, make_generator)

TASKS = [adding_task, frequency_task, parity_task, addition_task]
NAMES = [t.__name__ for t in TASKS]


# --- reproducibility -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize('task', TASKS, ids=NAMES)
def test_same_seed_same_tensors_different_seed_different(task):
    x1, y1 = task(16, seed=123)
    x2, y2 = task(16, seed=123)
    assert torch.equal(x1, x2) and torch.equal(y1, y2)
    x3, _ = task(16, seed=124)
    assert not torch.equal(x1, x3)


@pytest.mark.parametrize('task', TASKS, ids=NAMES)
def test_generator_stream_is_reproducible(task):
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    a = [task(8, generator=g1)[0] for _ in range(3)]
    b = [task(8, generator=g2)[0] for _ in range(3)]
    for p, q in zip(a, b): assert torch.equal(p, q)
    assert not torch.equal(a[0], a[1])


@pytest.mark.parametrize('task', TASKS, ids=NAMES)
def test_global_generator_is_used_without_seed(task):
    torch.manual_seed(9); x1 = task(8)[0]
    torch.manual_seed(9); x2 = task(8)[0]
    assert torch.equal(x1, x2)


@pytest.mark.parametrize('task', TASKS, ids=NAMES)
def test_dtype_argument(task):
    x, y = task(4, seed=0, dtype=torch.float64)[:2]
    assert x.dtype == torch.float64
    if y.is_floating_point(): assert y.dtype == torch.float64


# --- adding ----------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize('T', [2, 3, 10, 50, 51, 200])
def test_adding_markers_in_range(T):
    x, y = adding_task(4000, seq_len=T, seed=T)
    assert x.shape == (4000, T, 2) and y.shape == (4000, 1)
    m = x[..., 1]
    assert set(m.unique().tolist()) <= {0.0, 1.0}
    assert (m.sum(1) == 2).all()
    pos = m.nonzero()[:, 1].view(-1, 2)
    first_hi = max(1, T // 10)
    assert pos[:, 0].min() >= 0 and pos[:, 0].max() < first_hi
    assert pos[:, 1].min() >= T // 2 and pos[:, 1].max() <= T - 1
    assert (x[..., 0] >= -0.5).all() and (x[..., 0] < 0.5).all()


def test_adding_marker_positions_uniform():
    x, _ = adding_task(50_000, seed=0)
    pos = x[..., 1].nonzero()[:, 1].view(-1, 2).numpy()
    f1 = np.bincount(pos[:, 0], minlength=5) / len(pos)
    f2 = np.bincount(pos[:, 1], minlength=50)[25:] / len(pos)
    assert len(f1) == 5 and np.abs(f1 - 0.2).max() < 0.01
    assert np.abs(f2 - 0.04).max() < 0.005


def test_adding_target_recomputed():
    x, y = adding_task(500, seed=3, dtype=torch.float64)
    xs = x.numpy()
    for row, target in zip(xs, y[:, 0].numpy()):
        marked = [v for v, m in row if m == 1.0]
        assert len(marked) == 2
        assert target == pytest.approx(marked[0] + marked[1], abs=1e-12)


def test_adding_target_variance_and_baseline():
    assert ADDING_TARGET_VAR == pytest.approx(1 / 6)
    _, y = adding_task(200_000, seed=1, dtype=torch.float64)
    assert y.var().item() == pytest.approx(1 / 6, abs=0.002)
    assert y.mean().item() == pytest.approx(0.0, abs=0.003)
    _, y_held = adding_task(200_000, seed=2, dtype=torch.float64)
    assert ((y_held - y.mean()) ** 2).mean().item() == pytest.approx(1 / 6, abs=0.002)
    assert not solved('adding', ((y_held - y.mean()) ** 2).mean().item())


# --- frequency -------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize('Ts, L', [(1.0, 100), (0.5, 200), (0.25, 400), (2, 50), (0.3, 334), (100.0, 1)])
def test_frequency_lengths(Ts, L):
    x, y = frequency_task(4, sampling_period=Ts, seed=0)
    assert x.shape == (4, L, 1) and y.shape == (4,) and y.dtype == torch.long


def test_frequency_signal_recomputed_and_labels():
    x, y, p = frequency_task(64, 0.5, seed=7, return_params=True, dtype=torch.float64)
    T, phi = p['period'].numpy(), p['phase'].numpy()
    t = np.arange(200) * 0.5
    np.testing.assert_allclose(x[..., 0].numpy(), np.sin(2 * np.pi * (t + phi[:, None]) / T[:, None]), atol=1e-12)
    np.testing.assert_array_equal(y.numpy(), ((T > 5) & (T < 6)).astype(np.int64))


@pytest.mark.parametrize('B', [2, 4, 10, 256])
def test_frequency_stratified_exactly_half(B):
    for s in range(5):
        _, y = frequency_task(B, seed=s)
        assert y.sum().item() == B // 2


def test_frequency_batches_are_shuffled():
    _, y = frequency_task(256, seed=0)
    assert not torch.equal(y, y.sort(descending=True).values)


def test_frequency_period_and_phase_distribution():
    _, y, p = frequency_task(100_000, seed=1, return_params=True)
    T, phi = p['period'].numpy(), p['phase'].numpy()
    y = y.numpy()
    pos, neg = T[y == 1], T[y == 0]
    assert ((pos > 5) & (pos < 6)).all()
    assert (((neg > 1) & (neg < 5)) | ((neg > 6) & (neg < 100))).all()
    assert (neg < 5).mean() == pytest.approx(4 / 98, abs=0.003)           # uniform over the union by length
    hist, _ = np.histogram(neg[neg > 6], bins=10, range=(6, 100))
    assert hist.min() / hist.max() > 0.9
    assert pos.mean() == pytest.approx(5.5, abs=0.01)
    assert ((phi >= 0) & (phi < T)).all()
    assert (phi / T).mean() == pytest.approx(0.5, abs=0.01)


def test_frequency_unstratified_is_balanced_on_average():
    _, y = frequency_task(20_001, stratified=False, seed=0)
    assert y.float().mean().item() == pytest.approx(0.5, abs=0.02)


def test_frequency_custom_ranges():
    _, y, p = frequency_task(2000, pos_period=(2.0, 3.0), neg_period=(1.0, 4.0), seed=0, return_params=True)
    T = p['period']
    assert ((T[y == 1] > 2) & (T[y == 1] < 3)).all()
    Tn = T[y == 0]
    assert (((Tn > 1) & (Tn < 2)) | ((Tn > 3) & (Tn < 4))).all()


# --- parity ----------------------------------------------------------------------------------------------------------
def test_parity_shapes_values_and_targets():
    x, y = parity_task(3000, seed=0)
    assert x.shape == (3000, 1, 64) and y.shape == (3000, 1) and y.dtype == torch.float32
    assert set(x.unique().tolist()) <= {-1.0, 0.0, 1.0}
    for row, t in zip(x[:, 0].numpy(), y[:, 0].numpy()):
        assert t == int(np.sum(row == 1)) % 2


def test_parity_counts_uniform_one_to_n():
    x, y = parity_task(64_000, seed=1)
    k = (x != 0).sum(-1).flatten().numpy()
    counts = np.bincount(k, minlength=65)
    assert counts[0] == 0 and k.max() == 64
    assert counts[1:].min() > 0.8 * 1000 and counts[1:].max() < 1.2 * 1000
    assert y.mean().item() == pytest.approx(0.5, abs=0.01)


def test_parity_other_input_size():
    x, y = parity_task(500, input_size=5, seed=2)
    assert x.shape == (500, 1, 5)
    assert ((x != 0).sum(-1) >= 1).all()
    assert torch.equal(y[:, 0], ((x[:, 0] == 1).sum(-1) % 2).float())


# --- addition --------------------------------------------------------------------------------------------------------
def _decode(x, max_digits=5):
    "Independent decoding: each 10-feature slot is one digit (its hot index) or padding; most significant first."
    B, T, _ = x.shape
    out = []
    for b in range(B):
        seq = []
        for t in range(T):
            s = ''
            for j in range(max_digits):
                slot = x[b, t, 10 * j:10 * j + 10].tolist()
                if sum(slot) == 0: break
                assert sum(slot) == 1
                s += str(slot.index(1.0))
            seq.append(s)
        out.append(seq)
    return out


def test_addition_inputs_and_targets_recomputed():
    x, y = addition_task(300, seed=4)
    assert x.shape == (300, 5, 50) and y.shape == (300, 5, 6) and y.dtype == torch.long
    for b, strings in enumerate(_decode(x)):
        assert all(1 <= len(s) <= 5 for s in strings)
        total = 0
        for t, s in enumerate(strings):
            total += int(s)
            if t == 0:
                assert (y[b, 0] == IGNORE_INDEX).all()
                continue
            want = [int(c) for c in str(total)] + [ADDITION_END] * (6 - len(str(total)))
            assert y[b, t].tolist() == want
        # padding slots after the digits are zero vectors
        for t, s in enumerate(strings): assert x[b, t, 10 * len(s):].abs().sum() == 0


def test_addition_digit_counts_uniform():
    x, _ = addition_task(5000, seed=5)
    n = (x.view(5000, 5, 5, 10).sum(-1) > 0).sum(-1).flatten().numpy()
    counts = np.bincount(n, minlength=6)
    assert counts[0] == 0
    assert np.abs(counts[1:] / n.size - 0.2).max() < 0.01


def test_addition_hand_case_from_thesis_figure():
    assert digit_classes(torch.tensor(123 + 450), 6).tolist() == [5, 7, 3, 10, 10, 10]
    assert digit_classes(torch.tensor(123 + 450 + 6789), 6).tolist() == [7, 3, 6, 2, 10, 10]   # the caption's 7377 is a slip for 7362
    assert digit_classes(torch.tensor(0), 6).tolist() == [0, 10, 10, 10, 10, 10]
    assert digit_classes(torch.tensor(499995), 6).tolist() == [4, 9, 9, 9, 9, 5]
    with pytest.raises(ValueError, match='`n`'): digit_classes(torch.tensor(-1), 6)


@pytest.mark.parametrize('T, D, W', [(5, 5, 6), (2, 1, 2), (1, 3, 3), (10, 2, 3), (12, 3, 5)])
def test_addition_width(T, D, W):
    assert addition_width(T, D) == W
    x, y = addition_task(3, seq_len=T, max_digits=D, seed=0)
    assert x.shape == (3, T, 10 * D) and y.shape == (3, T, W)


def test_addition_loss_and_accuracy_hand_cases():
    x, y = addition_task(5, seed=6)
    perfect = 30 * F.one_hot(y.clamp(min=0), ADDITION_CLASSES).float()
    assert addition_accuracy(perfect, y).item() == 1.0
    assert addition_accuracy(perfect.flatten(2), y).item() == 1.0
    assert addition_loss(perfect, y).item() == pytest.approx(0.0, abs=1e-6)
    # one wrong digit in one sequence: that sequence is wrong; two wrong digits in the same sequence: still one
    bad = perfect.clone(); bad[0, 4, 5] = bad[0, 4, 5].roll(1); bad[0, 1, 0] = bad[0, 1, 0].roll(3)
    assert addition_accuracy(bad, y).item() == pytest.approx(0.8)
    bad[3, 2, 2] = bad[3, 2, 2].roll(2)
    assert addition_accuracy(bad, y).item() == pytest.approx(0.6)
    # the first step has no target: anything there is ignored, by accuracy and loss
    junk = perfect.clone(); junk[:, 0] = torch.randn(5, 6, 11) * 50
    assert addition_accuracy(junk, y).item() == 1.0
    assert addition_loss(junk, y).item() == pytest.approx(0.0, abs=1e-6)
    # uniform logits: 6 ln 11 per step
    assert addition_loss(torch.zeros(5, 5, 66), y).item() == pytest.approx(6 * math.log(11), rel=1e-6)


def test_addition_loss_matches_naive_sum():
    torch.manual_seed(0)
    _, y = addition_task(3, seq_len=4, seed=7)
    logits = torch.randn(3, 4, 6, 11, requires_grad=True)
    naive = sum(-torch.log_softmax(logits[b, t, j], -1)[y[b, t, j]] for b in range(3) for t in range(1, 4) for j in range(6)) / 9
    loss = addition_loss(logits, y)
    assert loss.item() == pytest.approx(naive.item(), rel=1e-6)
    loss.backward()
    assert logits.grad[:, 0].abs().sum() == 0 and logits.grad[:, 1:].abs().sum() > 0


@pytest.mark.parametrize('bad, msg', [(torch.zeros(5, 5, 60), 'logits'), (torch.zeros(5, 4, 66), 'logits'),
                                      (torch.zeros(5, 5, 66, dtype=torch.long), 'logits'), ([0.0], 'logits')])
def test_addition_metrics_bad_logits(bad, msg):
    _, y = addition_task(5, seed=0)
    with pytest.raises((ValueError, TypeError), match=msg): addition_loss(bad, y)
    with pytest.raises((ValueError, TypeError), match=msg): addition_accuracy(bad, y)


# --- solved criteria -------------------------------------------------------------------------------------------------
def test_solved_criteria():
    assert set(SOLVED_CRITERIA) == {'adding', 'frequency', 'parity', 'addition'}
    assert solved('adding', ADDING_TARGET_VAR / 100) and not solved('adding', ADDING_TARGET_VAR / 99)
    assert solved('frequency', 0.991) and not solved('frequency', 0.99)
    assert solved('parity', 0.98) and solved('addition', 1.0) and not solved('parity', 0.979)
    assert solved('adding', torch.tensor(1e-4))
    with pytest.raises(ValueError, match='task'): solved('mnist', 0.5)


# --- bad input -------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize('call, msg', [
    (lambda: adding_task(0), 'batch_size'), (lambda: adding_task(-1), 'batch_size'), (lambda: adding_task(2.0), 'batch_size'),
    (lambda: adding_task(True), 'batch_size'), (lambda: adding_task('8'), 'batch_size'),
    (lambda: adding_task(4, seq_len=1), 'seq_len'), (lambda: adding_task(4, seq_len=0), 'seq_len'),
    (lambda: adding_task(4, device='not-a-device'), 'device'), (lambda: adding_task(4, device=1.5), 'device'),
    (lambda: adding_task(4, dtype=torch.int32), 'dtype'), (lambda: adding_task(4, dtype='float'), 'dtype'),
    (lambda: adding_task(4, seed=-2), 'seed'), (lambda: adding_task(4, seed=1.5), 'seed'),
    (lambda: adding_task(4, generator='g'), 'generator'), (lambda: adding_task(4, seed=1, generator=torch.Generator()), 'seed'),
    (lambda: frequency_task(0), 'batch_size'), (lambda: frequency_task(5), 'batch_size'),
    (lambda: frequency_task(4, sampling_period=0), 'sampling_period'), (lambda: frequency_task(4, sampling_period=-1), 'sampling_period'),
    (lambda: frequency_task(4, sampling_period=float('nan')), 'sampling_period'),
    (lambda: frequency_task(4, sampling_period=101.0), 'sampling_period'), (lambda: frequency_task(4, sampling_period='1'), 'sampling_period'),
    (lambda: frequency_task(4, sampling_period=None), 'sampling_period'),
    (lambda: frequency_task(4, duration=0), 'duration'), (lambda: frequency_task(4, duration=float('inf')), 'duration'),
    (lambda: frequency_task(4, pos_period=(6.0, 5.0)), 'pos_period'), (lambda: frequency_task(4, pos_period=5.5), 'pos_period'),
    (lambda: frequency_task(4, pos_period=(5.0, 200.0)), 'pos_period'), (lambda: frequency_task(4, neg_period=(0.0, 100.0)), 'neg_period'),
    (lambda: frequency_task(4, device='cuda:x'), 'device'),
    (lambda: parity_task(0), 'batch_size'), (lambda: parity_task(4, input_size=0), 'input_size'),
    (lambda: parity_task(4, input_size=6.4), 'input_size'), (lambda: parity_task(4, device='nope'), 'device'),
    (lambda: addition_task(0), 'batch_size'), (lambda: addition_task(4, seq_len=0), 'seq_len'),
    (lambda: addition_task(4, max_digits=0), 'max_digits'), (lambda: addition_task(4, device=object()), 'device'),
])
def test_bad_input_names_the_argument(call, msg):
    with pytest.raises((ValueError, TypeError), match=msg): call()


def test_cuda_device_unavailable_is_a_clear_error():
    if torch.cuda.is_available(): pytest.skip('CUDA is available here')
    with pytest.raises(ValueError, match='device'): adding_task(4, device='cuda')


def test_cuda_generator_is_refused():
    if not torch.cuda.is_available(): pytest.skip('needs CUDA to build a CUDA generator')
    with pytest.raises(ValueError, match='generator'): make_generator(generator=torch.Generator(device='cuda'))


# --- devices ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize('task', TASKS, ids=NAMES)
@pytest.mark.parametrize('device', ['cpu', torch.device('cpu'), None])
def test_cpu_device(task, device):
    x, y = task(4, seed=0, device=device)[:2]
    assert x.device.type == 'cpu' and y.device.type == 'cpu'


def test_return_params_on_device():
    x, y, p = frequency_task(4, seed=0, device='cpu', return_params=True)
    assert p['period'].device == x.device and p['phase'].shape == (4,)


@pytest.mark.skipif(not torch.cuda.is_available(), reason='CUDA is not available on this machine')
@pytest.mark.parametrize('task', TASKS, ids=NAMES)
def test_cuda_device_same_tensors_as_cpu(task):
    xc, yc = task(16, seed=0, device='cuda')[:2]
    x, y = task(16, seed=0)[:2]
    assert xc.device.type == 'cuda' and yc.device.type == 'cuda'
    assert torch.equal(xc.cpu(), x) and torch.equal(yc.cpu(), y)
    assert as_device('cuda:0').type == 'cuda'


# --- sampler for the training loop -----------------------------------------------------------------------------------
@pytest.mark.parametrize('task, kw', [(adding_task, dict(seq_len=20)), (frequency_task, dict(sampling_period=0.5)),
                                      (parity_task, {}), (addition_task, dict(seq_len=3))], ids=NAMES)
def test_as_sampler_matches_task(task, kw):
    from adaptive_rnn.tasks import as_sampler
    sample = as_sampler(task, **kw)
    g1, g2 = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    for _ in range(2):
        x, y = sample(6, g1)
        x2, y2 = task(6, generator=g2, **kw)[:2]
        assert torch.equal(x, x2) and torch.equal(y, y2)


def test_as_sampler_bad():
    from adaptive_rnn.tasks import as_sampler
    with pytest.raises(ValueError, match='generator'): as_sampler(adding_task, generator=torch.Generator())
    with pytest.raises(TypeError, match='task'): as_sampler('adding')


def test_numpy_integers_are_accepted():
    x, y = adding_task(np.int64(3), seq_len=np.int32(7), seed=np.int64(2))
    assert x.shape == (3, 7, 2) and torch.equal(x, adding_task(3, seq_len=7, seed=2)[0])
