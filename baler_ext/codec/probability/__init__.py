"""Probability models of the bounded mode's integer code streams.

A probability model decides how many bits each integer code costs; it never decides a
value (the quantiser and the predictor do, :mod:`baler_ext.codec.residuals`). Two kinds:

``static`` (:mod:`.static`)
    one histogram per stream and chunk, stored beside the range-coded bits (or zigzag
    bytes for zstd): the entropy coders of :mod:`baler_ext.codec.entropy`;
``learned`` (:mod:`.learned`)
    a rate-trained integer MADE over the columns in coding order, conditioned on the
    columns decoded before, the previous object of the event and, optionally, the
    autoencoder's quantised latent; trained by the train stage (:mod:`.fit`, torch) and
    evaluated here without torch, bit-identically on every machine (:mod:`.intnet`,
    :mod:`.tables`).
"""
