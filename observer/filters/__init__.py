"""Hubble's flow filters, vectorised: a request's FlowFilters compiled into one predicate over stored records.

    predicate = compile_filters(request.whitelist, request.blacklist, FilterContext(node, snapshot, ...))
    mask = predicate(Batch(records, seqs))   # one bool per record

Names (pods, labels, namespaces, interfaces) are resolved through the registry snapshot, once per snapshot (again
when the registry replaces it); the predicate then only compares columns of the record array. A malformed filter
raises FilterError (a ValueError) with a reason a person can act on. Records of type EVENT_LOST are not flows:
the caller handles them, and the predicate's answer for them means nothing.
"""

from flowscope.observer.filters.base import Batch, FilterContext, FilterError, Predicate
from flowscope.observer.filters.core import compile_filter, compile_filters

__all__ = ["Batch", "FilterContext", "FilterError", "Predicate", "compile_filter", "compile_filters"]
