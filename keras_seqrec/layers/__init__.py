"""Small reusable layers, each registered for `.keras` serialisation."""

from keras_seqrec.layers.bahdanau_attention import CausalBahdanauAttention
from keras_seqrec.layers.candidates import CandidateLogits, FirstRow
from keras_seqrec.layers.feature_embedding import FeatureItemEmbedding
from keras_seqrec.layers.item_embedding import ItemEmbedding, ItemScores, mask_padding_logits
from keras_seqrec.layers.position_embedding import CausalPaddingMask, PositionEmbedding
from keras_seqrec.layers.positions import LastPosition, PaddingMask, TruncateSequence

__all__ = [
    "CandidateLogits",
    "CausalBahdanauAttention",
    "CausalPaddingMask",
    "FeatureItemEmbedding",
    "FirstRow",
    "ItemEmbedding",
    "ItemScores",
    "LastPosition",
    "PaddingMask",
    "PositionEmbedding",
    "TruncateSequence",
    "mask_padding_logits",
]
