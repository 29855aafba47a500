"""Parameter constraints for your own estimators: ``Interval``, ``StrOptions``, ``Options``.

A hyper-parameter of a plugin is a :class:`skmeta.estimator.Param` whose last
argument lists scikit-learn constraints, checked when ``fit`` starts (never in
``__init__``). scikit-learn keeps its constraint classes in a private module
(``sklearn.utils._param_validation``); import them from here instead, so that your
code does not depend on scikit-learn's private layout (skmeta follows it if it moves):

* ``Interval(type, left, right, closed=...)``: a number in a range, ``type`` being
  :class:`numbers.Integral` or :class:`numbers.Real`;
* ``StrOptions({"a", "b"})``: one of these strings;
* ``Options(type, {values})``: one of these values of a type.

``None`` in a constraint list allows None; a type (``bool``, ``callable``...) allows
its instances. The error at ``fit`` is scikit-learn's ``InvalidParameterError`` (also
exported here), e.g. "The 'n_way' parameter of LayerwiseMAMLClassifier must be an int in
the range [2, inf). Got 1 instead."

Examples
--------
>>> from numbers import Integral, Real
>>> from skmeta.estimator import Param
>>> from skmeta.utils.validation import Interval, StrOptions
>>> step = Param(0.1, "float", "The step size.", [Interval(Real, 0, None, closed="neither")])
>>> mode = Param("fast", '{"fast", "exact"}', "How to solve.", [StrOptions({"fast", "exact"})])
>>> Interval(Integral, 1, None, closed="left").is_satisfied_by(3)
True
"""

from sklearn.utils._param_validation import (
    Interval,
    InvalidParameterError,
    Options,
    StrOptions,
)

__all__ = ["Interval", "StrOptions", "Options", "InvalidParameterError"]
