__version__ = "0.0.1"

# The models, importable from the top: `from adaptive_rnn import SkipLSTM, ACT, RepeatRNN`.
from .cells import RNNCell, LSTMCell, GRUCell
from .layers import RNN, LSTM, GRU
from .skip import (SkipRNN, SkipLSTM, SkipGRU, RandomSkipRNN, RandomSkipLSTM, RandomSkipGRU, SkipOutput, budget_loss,
                   count_updates, count_flops)
from .act import ACT, ACTOutput, ponder_cost
from .repeat import RepeatRNN, RepeatSkip, RepeatOutput, RepeatSkipOutput

_LATER = dict(SequenceModel='train', fit='train', run_experiment='experiments', sweep='experiments', report='experiments',
              EXPERIMENTS='experiments')

def __getattr__(name):   # training and the experiments load on first use (they bring pandas and matplotlib)
    if name in _LATER:
        import importlib
        return getattr(importlib.import_module(f'.{_LATER[name]}', __name__), name)
    raise AttributeError(f"module 'adaptive_rnn' has no attribute {name!r}")

__all__ = ['RNNCell', 'LSTMCell', 'GRUCell', 'RNN', 'LSTM', 'GRU', 'SkipRNN', 'SkipLSTM', 'SkipGRU', 'RandomSkipRNN',
           'RandomSkipLSTM', 'RandomSkipGRU', 'SkipOutput', 'budget_loss', 'count_updates', 'count_flops', 'ACT', 'ACTOutput',
           'ponder_cost', 'RepeatRNN', 'RepeatSkip', 'RepeatOutput', 'RepeatSkipOutput', *_LATER]
