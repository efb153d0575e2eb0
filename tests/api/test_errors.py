"""Every error code of the contract: status, body {"error": {"code", "message",
"path"}}, and the JSON Pointer to the offending element."""

import json
import socket
import threading
import time

import numpy as np
import pytest
import requests

import apiutil
from apiutil import check_error, check_error_body, dumps, http_request, read_response

L, O = "/v1/loss", "/v1/objective"


def mse(**kw):
    body = {"loss": "mse", "inputs": {"predictions": [1.0, 2.0, 3.0], "targets": [0.0, 1.0, 2.0]}}
    body.update(kw)
    return body


def task(name, **kw):
    t = {"name": name, "loss": "mse", "inputs": {"predictions": [1.0, 2.0], "targets": [0.0, 0.0]}}
    t.update(kw)
    return t


CE = {"predictions": [[1.0, 2.0, 3.0], [1.0, 2.0, 3.0]], "targets": [0, 1]}
ELBO_IN = {"x": [[1.0]], "reconstruction": [[1.0]], "mu": [[0.0]], "logvar": [[0.0]]}

# (id, endpoint, body (dict, or raw text), status, code, JSON Pointer)
CASES = [
    # 400
    ("malformed_missing_comma", L, '{"loss": "mse" "inputs": {}}', 400, "malformed_json", ""),
    ("malformed_truncated", L, '{"loss": "mse",', 400, "malformed_json", ""),
    ("malformed_empty", L, "", 400, "malformed_json", ""),
    ("malformed_trailing_garbage", L, '{"loss": "mse"} x', 400, "malformed_json", ""),
    ("malformed_bare_word", L, "mse", 400, "malformed_json", ""),
    ("malformed_single_quotes", L, "{'loss': 'mse'}", 400, "malformed_json", ""),
    ("malformed_trailing_comma", L, '{"loss": "mse",}', 400, "malformed_json", ""),
    ("malformed_duplicate_key", L, '{"loss": "mse", "loss": "mae"}', 400, "malformed_json", ""),
    ("malformed_bad_utf8", L, b'{"loss": "\xff\xfe"}', 400, "malformed_json", ""),
    ("malformed_plus_number", L, '{"loss":"mse","inputs":{"predictions":[+1.0],"targets":[1.0]}}',
     400, "malformed_json", ""),
    ("malformed_leading_zero", L, '{"loss":"mse","inputs":{"predictions":[01.0],"targets":[1.0]}}',
     400, "malformed_json", ""),
    ("malformed_hex", L, '{"loss":"mse","inputs":{"predictions":[0x10],"targets":[1.0]}}',
     400, "malformed_json", ""),
    ("top_level_array", L, "[1, 2]", 400, "invalid_request", ""),
    ("top_level_number", L, "1.5", 400, "invalid_request", ""),
    ("top_level_string", L, '"mse"', 400, "invalid_request", ""),
    ("top_level_null", L, "null", 400, "invalid_request", ""),
    ("objective_top_level_array", O, "[]", 400, "invalid_request", ""),
    ("depth_64_is_fine", L, "[" * 64 + "]" * 64, 400, "invalid_request", ""),
    ("depth_65_arrays", L, "[" * 65 + "]" * 65, 400, "nesting_too_deep", None),
    ("depth_65_objects", L, '{"a":' * 65 + "1" + "}" * 65, 400, "nesting_too_deep", None),
    ("depth_1000", L, "[" * 1000 + "]" * 1000, 400, "nesting_too_deep", None),
    ("depth_100000_unclosed", L, "[" * 100000, 400, "nesting_too_deep", None),
    # 422: non-finite numbers
    ("nan_nested", L, '{"loss":"mse","inputs":{"predictions":[1.0,2.0,NaN],"targets":[0.0,1.0,2.0]}}',
     422, "non_finite_value", "/inputs/predictions/2"),
    ("infinity_nested_2d", L,
     '{"loss":"mse","inputs":{"predictions":[[1.0,2.0],[3.0,Infinity]],"targets":[[0,0],[0,0]]}}',
     422, "non_finite_value", "/inputs/predictions/1/1"),
    ("minus_infinity_object", L,
     '{"loss":"mse","inputs":{"predictions":{"shape":[6],"data":[1,2,3,4,5,-Infinity]},"targets":[0,0,0,0,0,0]}}',
     422, "non_finite_value", "/inputs/predictions/data/5"),
    ("overflow_1e400", L, '{"loss":"mse","inputs":{"predictions":[1.0,2.0,1e400],"targets":[0.0,1.0,2.0]}}',
     422, "non_finite_value", "/inputs/predictions/2"),
    ("overflow_minus_1e400_targets", L,
     '{"loss":"mse","inputs":{"predictions":[1.0,2.0],"targets":[-1e400,1.0]}}',
     422, "non_finite_value", "/inputs/targets/0"),
    ("nan_weights", L, '{"loss":"mse","inputs":{"predictions":[1.0,2.0],"targets":[1.0,2.0]},"weights":[1.0,NaN]}',
     422, "non_finite_value", "/weights/1"),
    ("infinity_param", L, '{"loss":{"name":"huber","delta":Infinity},"inputs":{"predictions":[1.0],"targets":[1.0]}}',
     422, "non_finite_value", "/loss/delta"),
    ("nan_class_weights", L,
     '{"loss":{"name":"cross_entropy","class_weights":[1.0,NaN]},"inputs":{"predictions":[[1.0,2.0]],"targets":[1]}}',
     422, "non_finite_value", "/loss/class_weights/1"),
    ("nan_objective_task", O,
     '{"tasks":[{"name":"a","loss":"mse","inputs":{"predictions":[1.0],"targets":[1.0]}},'
     '{"name":"b","loss":"mse","inputs":{"predictions":[1.0],"targets":[NaN]}}]}',
     422, "non_finite_value", "/tasks/1/inputs/targets/0"),
    ("nan_log_sigma", O,
     '{"tasks":[{"name":"a","loss":"mse","inputs":{"predictions":[1.0],"targets":[1.0]}},'
     '{"name":"b","loss":"mse","inputs":{"predictions":[1.0],"targets":[1.0]}}],'
     '"weighting":{"scheme":"uncertainty","log_sigma":[0.0,NaN]}}',
     422, "non_finite_value", "/weighting/log_sigma/1"),
    ("nan_penalty_params", O,
     '{"tasks":[{"name":"a","loss":"mse","inputs":{"predictions":[1.0],"targets":[1.0]}}],'
     '"regularization":[{"kind":"l2","lambda":1.0,"params":[1.0]},{"kind":"l1","lambda":1.0,"params":[1.0,2.0,NaN]}]}',
     422, "non_finite_value", "/regularization/1/params/2"),
    ("nan_task_weight", O,
     '{"tasks":[{"name":"a","loss":"mse","inputs":{"predictions":[1.0],"targets":[1.0]},"weight":NaN}]}',
     422, "non_finite_value", "/tasks/0/weight"),
    # 422: tensors
    ("ragged", L, mse(inputs={"predictions": [[1.0, 2.0], [3.0]], "targets": [1.0, 2.0]}),
     422, "invalid_tensor", "/inputs/predictions/1"),
    ("string_element", L, mse(inputs={"predictions": [1.0, 2.0, "x"], "targets": [0.0, 1.0, 2.0]}),
     422, "invalid_tensor", "/inputs/predictions/2"),
    ("bool_element", L, mse(inputs={"predictions": [[1.0, 2.0], [3.0, 4.0]], "targets": [[1.0, 2.0], [3.0, True]]}),
     422, "invalid_tensor", "/inputs/targets/1/1"),
    ("null_element", L, mse(inputs={"predictions": [1.0, None], "targets": [1.0, 2.0]}),
     422, "invalid_tensor", "/inputs/predictions/1"),
    ("string_tensor", L, mse(inputs={"predictions": "abc", "targets": [1.0]}),
     422, "invalid_tensor", "/inputs/predictions"),
    ("object_data_string", L, mse(inputs={"predictions": {"shape": [6], "data": [1, 2, 3, 4, 5, "a"]},
                                          "targets": [0, 0, 0, 0, 0, 0]}),
     422, "invalid_tensor", "/inputs/predictions/data/5"),
    ("object_data_length", L, mse(inputs={"predictions": {"shape": [3], "data": [1.0, 2.0]},
                                          "targets": [1.0, 2.0, 3.0]}),
     422, "invalid_tensor", "/inputs/predictions/data"),
    ("object_bad_dtype", L, mse(inputs={"predictions": {"shape": [2], "data": [1.0, 2.0], "dtype": "float16"},
                                        "targets": [1.0, 2.0]}),
     422, "invalid_tensor", "/inputs/predictions/dtype"),
    ("object_int32_fraction", L, mse(inputs={"predictions": {"shape": [2], "data": [1.0, 2.5], "dtype": "int32"},
                                             "targets": [1.0, 2.0]}),
     422, "invalid_tensor", "/inputs/predictions/data/1"),
    ("object_int32_range", L, mse(inputs={"predictions": {"shape": [2], "data": [1.0, 2147483648.0], "dtype": "int32"},
                                          "targets": [1.0, 2.0]}),
     422, "invalid_tensor", "/inputs/predictions/data/1"),
    ("object_float32_overflow", L, mse(inputs={"predictions": {"shape": [2], "data": [1.0, 1e39], "dtype": "float32"},
                                               "targets": [1.0, 2.0]}),
     422, "invalid_tensor", "/inputs/predictions/data/1"),
    ("object_negative_shape", L, mse(inputs={"predictions": {"shape": [-1], "data": []}, "targets": [1.0]}),
     422, "invalid_tensor", "/inputs/predictions/shape"),
    # the pointer names the key as sent, however long (it was cut at 31 bytes)
    ("unknown_parameter_long_name", L, {"loss": {"name": "huber", "delta_with_a_very_long_parameter_name_xyz": 1.0},
                                        "inputs": {"predictions": [1.0], "targets": [1.0]}},
     422, "unknown_parameter", "/loss/delta_with_a_very_long_parameter_name_xyz"),
    ("object_fractional_shape", L, mse(inputs={"predictions": {"shape": [1.5], "data": []}, "targets": [1.0]}),
     422, "invalid_tensor", "/inputs/predictions/shape"),
    # an integer beyond 2^53 is a size, not a malformed one: more elements than memory
    ("object_shape_beyond_2_53", L, mse(inputs={"predictions": {"shape": [9007199254740994, 1], "data": []},
                                                "targets": [1.0]}),
     413, "too_many_elements", "/inputs/predictions/shape"),
    ("object_unknown_field", L, mse(inputs={"predictions": {"shape": [1], "data": [1.0], "foo": 1},
                                            "targets": [1.0]}),
     422, "unknown_field", "/inputs/predictions/foo"),
    ("object_missing_data", L, mse(inputs={"predictions": {"shape": [1]}, "targets": [1.0]}),
     422, "missing_field", "/inputs/predictions/data"),
    # 422: fields
    ("unknown_field", L, mse(foo=1), 422, "unknown_field", "/foo"),
    ("unknown_field_escaped", L, mse(**{"a/b~c": 1}), 422, "unknown_field", "/a~1b~0c"),
    ("objective_unknown_field", O, {"tasks": [task("a")], "bogus": True}, 422, "unknown_field", "/bogus"),
    ("task_unknown_field", O, {"tasks": [task("a"), task("b", extra=1)]}, 422, "unknown_field", "/tasks/1/extra"),
    ("weighting_unknown_field", O, {"tasks": [task("a")], "weighting": {"scheme": "fixed", "x": 1}},
     422, "unknown_field", "/weighting/x"),
    ("missing_inputs", L, {"loss": "mse"}, 422, "missing_field", "/inputs"),
    ("missing_loss", L, {"inputs": {"predictions": [1.0], "targets": [1.0]}}, 422, "missing_field", "/loss"),
    ("missing_loss_name", L, {"loss": {"delta": 1.0}, "inputs": {}}, 422, "missing_field", "/loss/name"),
    ("reduction_avg", L, mse(reduction="avg"), 422, "invalid_field", "/reduction"),
    ("reduction_number", L, mse(reduction=1), 422, "invalid_field", "/reduction"),
    ("outputs_foo", L, mse(outputs=["cost", "foo"]), 422, "invalid_field", "/outputs/1"),
    ("outputs_not_array", L, mse(outputs="cost"), 422, "invalid_field", "/outputs"),
    ("objective_outputs_cost", O, {"tasks": [task("a")], "outputs": ["objective", "cost"]},
     422, "invalid_field", "/outputs/1"),
    ("loss_is_number", L, mse(loss=3), 422, "invalid_field", "/loss"),
    ("inputs_not_object", L, mse(inputs=[1.0]), 422, "invalid_field", "/inputs"),
    # 422: the core's codes
    ("unknown_loss_string", L, mse(loss="nope"), 422, "unknown_loss", "/loss"),
    ("unknown_loss_object", L, mse(loss={"name": "nope"}), 422, "unknown_loss", "/loss/name"),
    ("unknown_parameter", L, {"loss": {"name": "huber", "foo": 1}, "inputs": {"predictions": [1.0], "targets": [1.0]}},
     422, "unknown_parameter", "/loss/foo"),
    ("mse_has_no_parameters", L, mse(loss={"name": "mse", "delta": 1.0}), 422, "unknown_parameter", "/loss/delta"),
    ("invalid_parameter_string", L, {"loss": {"name": "huber", "delta": "abc"}, "inputs": {"predictions": [1.0], "targets": [1.0]}},
     422, "invalid_parameter", "/loss/delta"),
    ("invalid_parameter_bool", L, {"loss": {"name": "hinge", "squared": 1}, "inputs": {"predictions": [1.0], "targets": [1.0]}},
     422, "invalid_parameter", "/loss/squared"),
    ("invalid_parameter_enum", L, {"loss": {"name": "bce", "from": "odds"}, "inputs": {"predictions": [0.5], "targets": [1.0]}},
     422, "parameter_out_of_range", "/loss/from"),
    ("invalid_parameter_integer", L, {"loss": {"name": "cross_entropy", "ignore_index": 1.5}, "inputs": CE},
     422, "invalid_parameter", "/loss/ignore_index"),
    ("invalid_parameter_object", L, {"loss": {"name": "huber", "delta": {"x": 1}}, "inputs": {"predictions": [1.0], "targets": [1.0]}},
     422, "invalid_parameter", "/loss/delta"),
    ("focal_alpha_length", L, {"loss": {"name": "focal", "alpha": [0.5, 0.5, 0.5]}, "inputs": {"predictions": [[1.0, 2.0]], "targets": [1]}},
     422, "shape_mismatch", "/loss/alpha"),
    ("nul_in_string", L, '{"loss":"mse\\u0000x","inputs":{"predictions":[1.0],"targets":[1.0]}}', 400, "malformed_json", None),
    ("scalar_predictions", L, {"loss": "mse", "inputs": {"predictions": 2.0, "targets": 1.0}}, 422, "invalid_rank", "/inputs/predictions"),
    ("rank_9", L, {"loss": "mse", "inputs": {"predictions": [[[[[[[[[1.0]]]]]]]]], "targets": [[[[[[[[[1.0]]]]]]]]]}},
     422, "invalid_tensor", "/inputs/predictions"),
    ("weights_wrong_rank", L, mse(weights=[[1.0, 2.0, 3.0]]), 422, "shape_mismatch", "/weights"),
    ("empty_batch_mean", L, {"loss": "mse", "inputs": {"predictions": [], "targets": []}}, 422, "zero_total_weight", None),
    ("delta_negative", L, {"loss": {"name": "huber", "delta": -1}, "inputs": {"predictions": [1.0], "targets": [1.0]}},
     422, "parameter_out_of_range", "/loss/delta"),
    ("delta_zero", L, {"loss": {"name": "huber", "delta": 0}, "inputs": {"predictions": [1.0], "targets": [1.0]}},
     422, "parameter_out_of_range", "/loss/delta"),
    ("label_smoothing_one", L, {"loss": {"name": "bce", "label_smoothing": 1.0}, "inputs": {"predictions": [0.5], "targets": [1.0]}},
     422, "parameter_out_of_range", "/loss/label_smoothing"),
    ("gamma_negative", L, {"loss": {"name": "focal", "gamma": -0.5}, "inputs": {"predictions": [0.5], "targets": [1.0]}},
     422, "parameter_out_of_range", "/loss/gamma"),
    ("class_weights_negative", L, {"loss": {"name": "cross_entropy", "class_weights": [1, -1, 1]}, "inputs": CE},
     422, "parameter_out_of_range", "/loss/class_weights/1"),
    ("class_weights_wrong_length", L, {"loss": {"name": "cross_entropy", "class_weights": [1, 1]}, "inputs": CE},
     422, "shape_mismatch", "/loss/class_weights"),
    ("conflicting_sigma_bernoulli", L, {"loss": {"name": "elbo", "likelihood": "bernoulli", "sigma": 2.0}, "inputs": ELBO_IN},
     422, "conflicting_parameters", "/loss/sigma"),
    ("missing_input", L, {"loss": "mse", "inputs": {"predictions": [1.0]}}, 422, "missing_input", "/inputs/targets"),
    ("unknown_input", L, {"loss": "mse", "inputs": {"predictions": [1.0], "targets": [1.0], "foo": [1.0]}},
     422, "unknown_input", "/inputs/foo"),
    ("invalid_rank", L, {"loss": "cross_entropy", "inputs": {"predictions": [1.0, 2.0], "targets": [1]}},
     422, "invalid_rank", "/inputs/predictions"),
    ("shape_mismatch", L, {"loss": "mse", "inputs": {"predictions": [1.0, 2.0], "targets": [1.0]}},
     422, "shape_mismatch", "/inputs/targets"),
    ("weights_shape_mismatch", L, mse(weights=[1.0, 2.0]), 422, "shape_mismatch", "/weights"),
    ("class_index_out_of_range", L, {"loss": "cross_entropy", "inputs": {"predictions": CE["predictions"], "targets": [0, 5]}},
     422, "invalid_class_index", "/inputs/targets/1"),
    ("class_index_fraction", L, {"loss": "cross_entropy", "inputs": {"predictions": CE["predictions"], "targets": [0, 1.5]}},
     422, "invalid_class_index", "/inputs/targets/1"),
    ("class_index_negative", L, {"loss": "cross_entropy", "inputs": {"predictions": CE["predictions"], "targets": [-1, 0]}},
     422, "invalid_class_index", "/inputs/targets/0"),
    ("class_index_object", L, {"loss": "cross_entropy",
                               "inputs": {"predictions": CE["predictions"], "targets": {"shape": [2], "data": [0, 3]}}},
     422, "invalid_class_index", "/inputs/targets/data/1"),
    ("probability_out_of_range", L, {"loss": "bce", "inputs": {"predictions": [0.5, 1.5], "targets": [0.0, 1.0]}},
     422, "probability_out_of_range", "/inputs/predictions/1"),
    ("target_out_of_range", L, {"loss": "bce", "inputs": {"predictions": [[0.5, 0.5], [0.5, 0.5]], "targets": [[0.0, 1.0], [-0.1, 1.0]]}},
     422, "probability_out_of_range", "/inputs/targets/1/0"),
    ("invalid_label_hinge", L, {"loss": "hinge", "inputs": {"predictions": [0.5, 0.5, 1.0], "targets": [1.0, -1.0, 0.5]}},
     422, "invalid_label", "/inputs/targets/2"),
    ("invalid_label_contrastive", L, {"loss": "contrastive", "inputs": {"x1": [[0.5]], "x2": [[1.0]], "similar": [0.5]}},
     422, "invalid_label", "/inputs/similar/0"),
    ("negative_weight", L, {"loss": "mse", "inputs": {"predictions": [1.0, 2.0], "targets": [1.0, 2.0]}, "weights": [1.0, -1.0]},
     422, "negative_weight", "/weights/1"),
    ("negative_weight_object", L, mse(weights={"shape": [3], "data": [1.0, 1.0, -2.0]}),
     422, "negative_weight", "/weights/data/2"),
    ("zero_total_weight", L, mse(weights=[0.0, 0.0, 0.0]), 422, "zero_total_weight", "/weights"),
    # a total weight that overflows: 1/inf made the cost and gradients 0, with 200
    ("total_weight_overflows", L, mse(weights=[1e308, 1e308, 1.0]), 422, "result_not_finite", "/weights"),
    ("total_class_weight_overflows", L, {"loss": {"name": "cross_entropy", "class_weights": [1e308, 1e308]},
                                         "inputs": {"predictions": [[1.0, 0.0], [0.0, 1.0]], "targets": [1, 1]}},
     422, "result_not_finite", "/loss/class_weights"),
    ("task_total_weight_overflows", O, {"tasks": [task("a", weights=[1e308, 1e308])]},
     422, "result_not_finite", "/tasks/0/weights"),
    ("result_not_finite", L, {"loss": "mse", "inputs": {"predictions": [1e200, 1.0], "targets": [-1e200, 1.0]}},
     422, "result_not_finite", None),
    # a finite cost (8.5e307) with a gradient past the doubles (3.4e308)
    ("gradient_not_finite", L, {"loss": "mse", "reduction": "sum", "inputs": {"predictions": [1.0], "targets": [0.0]},
                                "weights": [1.7e308]},
     422, "result_not_finite", ""),
    # float32 losses of 4e40: a double cost, but losses in the predictions' dtype
    ("float32_losses_beyond_range", L, {"loss": "mse", "outputs": ["cost", "losses"],
                                        "inputs": {"predictions": {"shape": [2], "data": [1e20, 1.0], "dtype": "float32"},
                                                   "targets": [-1e20, 0.0]}},
     422, "result_not_finite", ""),
    ("float32_gradients_beyond_range", L, {"loss": "mse", "reduction": "sum",
                                           "inputs": {"predictions": {"shape": [1], "data": [1e10], "dtype": "float32"},
                                                      "targets": [0.0]}, "weights": [1e30]},
     422, "result_not_finite", ""),
    # 422: objectives
    ("tasks_missing", O, {"weighting": {"scheme": "fixed"}}, 422, "missing_field", "/tasks"),
    ("tasks_empty", O, {"tasks": []}, 422, "invalid_field", "/tasks"),
    ("task_without_name", O, {"tasks": [{"loss": "mse", "inputs": {}}]}, 422, "missing_field", "/tasks/0/name"),
    ("duplicate_task_name", O, {"tasks": [task("a"), task("a")]}, 422, "duplicate_task_name", "/tasks/1/name"),
    ("task_unknown_loss", O, {"tasks": [task("a"), task("b", loss="nope")]}, 422, "unknown_loss", "/tasks/1/loss"),
    ("task_unknown_loss_name", O, {"tasks": [task("a"), task("b", loss={"name": "nope"})]},
     422, "unknown_loss", "/tasks/1/loss/name"),
    ("task_shape_mismatch", O, {"tasks": [task("a"), task("b", inputs={"predictions": [1.0, 2.0], "targets": [0.0, 1.0, 3.0]})]},
     422, "shape_mismatch", "/tasks/1/inputs/targets"),
    ("task_bad_element", O, {"tasks": [task("a"), task("b", inputs={"predictions": [1.0, 2.0], "targets": [0.0, "x"]})]},
     422, "invalid_tensor", "/tasks/1/inputs/targets/1"),
    ("task_class_index", O, {"tasks": [task("a"), task("b", loss="cross_entropy", inputs={"predictions": CE["predictions"], "targets": [2, 3]})]},
     422, "invalid_class_index", "/tasks/1/inputs/targets/1"),
    ("task_negative_weight", O, {"tasks": [task("a"), task("b", weight=-1.0)]}, 422, "invalid_field", "/tasks/1/weight"),
    ("task_weight_with_uncertainty", O, {"tasks": [task("a", weight=1.0)], "weighting": {"scheme": "uncertainty", "log_sigma": [0.0]}},
     422, "conflicting_parameters", "/tasks/0/weight"),
    ("uncertainty_without_values", O, {"tasks": [task("a")], "weighting": {"scheme": "uncertainty"}},
     422, "missing_parameter", "/weighting"),
    ("uncertainty_both_keys", O, {"tasks": [task("a")], "weighting": {"scheme": "uncertainty", "log_sigma": [0.0], "log_variance": [0.0]}},
     422, "conflicting_parameters", None),
    ("log_sigma_count", O, {"tasks": [task("a")], "weighting": {"scheme": "uncertainty", "log_sigma": [0.0, 1.0]}},
     422, "shape_mismatch", "/weighting/log_sigma"),
    ("log_sigma_element_string", O, {"tasks": [task("a"), task("b")], "weighting": {"scheme": "uncertainty", "log_sigma": [0.0, "x"]}},
     422, "invalid_tensor", "/weighting/log_sigma/1"),
    ("log_sigma_overflow", O, {"tasks": [task("a"), task("b")], "weighting": {"scheme": "uncertainty", "log_sigma": [0.0, -1e300]}},
     422, "result_not_finite", "/weighting/log_sigma/1"),
    # a finite contribution whose gradient -2 eff L + 1 is not
    ("log_sigma_gradient_overflow", O, {"tasks": [task("a", inputs={"predictions": [1.3e154], "targets": [0.0]})],
                                        "weighting": {"scheme": "uncertainty", "log_sigma": [-0.1]}},
     422, "result_not_finite", "/weighting/log_sigma/0"),
    ("data_term_overflow", O, {"tasks": [task("a", weight=1.5e308, inputs={"predictions": [1.0], "targets": [0.0]}),
                                         task("b", weight=1e308, inputs={"predictions": [1.0], "targets": [0.0]})],
                               "outputs": ["objective"]},
     422, "result_not_finite", ""),
    ("fixed_with_log_sigma", O, {"tasks": [task("a")], "weighting": {"scheme": "fixed", "log_sigma": [0.0]}},
     422, "conflicting_parameters", "/weighting/log_sigma"),
    ("weighting_not_object", O, {"tasks": [task("a")], "weighting": 3}, 422, "invalid_field", "/weighting"),
    ("scheme_unknown", O, {"tasks": [task("a")], "weighting": {"scheme": "x"}}, 422, "invalid_field", "/weighting/scheme"),
    ("scheme_missing", O, {"tasks": [task("a")], "weighting": {}}, 422, "missing_field", "/weighting/scheme"),
    ("lambda_negative", O, {"tasks": [task("a")], "regularization": [{"kind": "l2", "lambda": -1.0, "params": [1.0]}]},
     422, "parameter_out_of_range", "/regularization/0/lambda"),
    ("lambda_and_prior", O, {"tasks": [task("a")], "regularization": [{"kind": "l2", "lambda": 1.0, "prior": "gaussian", "sigma": 1.0, "params": [1.0]}]},
     422, "conflicting_parameters", None),
    ("prior_kind_mismatch", O, {"tasks": [task("a")], "regularization": [{"kind": "l1", "prior": "gaussian", "sigma": 1.0, "params": [1.0]}]},
     422, "conflicting_parameters", "/regularization/0/prior"),
    ("l1_ratio_out_of_range", O, {"tasks": [task("a")], "regularization": [{"kind": "elastic_net", "lambda": 1.0, "l1_ratio": 1.5, "params": [1.0]}]},
     422, "parameter_out_of_range", "/regularization/0/l1_ratio"),
    ("unknown_kind", O, {"tasks": [task("a")], "regularization": [{"kind": "l3", "lambda": 1.0, "params": [1.0]}]},
     422, "unknown_kind", "/regularization/0/kind"),
    # arrays of numbers where objects belong: the first element is the error
    ("tasks_numbers", O, {"tasks": [1.0, 2.0]}, 422, "invalid_field", "/tasks/0"),
    ("tasks_nested_numbers", O, {"tasks": [[1.0]]}, 422, "invalid_field", "/tasks/0"),
    ("tasks_mixed", O, {"tasks": [task("a"), 1.0]}, 422, "invalid_field", "/tasks/1"),
    ("tasks_empty", O, {"tasks": []}, 422, "invalid_field", "/tasks"),
    ("regularization_numbers", O, {"tasks": [task("a")], "regularization": [5.0]},
     422, "invalid_field", "/regularization/0"),
    ("penalty_params_missing", O, {"tasks": [task("a")], "regularization": [{"kind": "l2", "lambda": 1.0}]},
     422, "missing_field", "/regularization/0/params"),
    ("penalty_params_bad_element", O, {"tasks": [task("a")], "regularization": [{"kind": "l2", "lambda": 1.0, "params": [1.0]},
                                                                               {"kind": "l2", "lambda": 1.0, "params": [1.0, 2.0, None]}]},
     422, "invalid_tensor", "/regularization/1/params/2"),
    ("penalty_overflow", O, {"tasks": [task("a")], "regularization": [{"kind": "l2", "lambda": 1.0, "params": [1.0]},
                                                                     {"kind": "l2", "lambda": 1.0, "params": [1.0, 2.0, 1e300]}]},
     422, "result_not_finite", None),
    ("penalties_total_overflow", O, {"tasks": [task("a")], "regularization": [
        {"kind": "l2", "lambda": 2.0, "params": [1.3e154]}, {"kind": "l2", "lambda": 2.0, "params": [1.3e154]}]},
     422, "result_not_finite", ""),
    ("regularization_not_array", O, {"tasks": [task("a")], "regularization": {"kind": "l2"}},
     422, "invalid_field", "/regularization"),
]


def _send(lossd, endpoint, body):
    if isinstance(body, (dict, list)):
        body = dumps(body)
    return lossd.post(endpoint, body)


@pytest.mark.parametrize("endpoint,body,status,code,path", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_error(lossd, endpoint, body, status, code, path):
    r = _send(lossd, endpoint, body)
    if code is None:  # only the status and the pointer are pinned down
        assert r.status_code == status, r.text
        err = check_error_body(r.json(), r.json()["error"]["code"], path)
    else:
        err = check_error(r, status, code, path)
    if status == 422 and err["path"]:
        # the pointer must resolve in the request (RFC 6901)
        doc = json.loads(body) if isinstance(body, str) and "NaN" not in body and "Infinity" not in body \
            and "1e400" not in body else (body if isinstance(body, dict) else None)
        if doc is not None and code not in ("unknown_field", "missing_field", "missing_input",
                                            "missing_parameter", "unknown_input"):
            _resolve(doc, err["path"])


def _resolve(doc, pointer):
    cur = doc
    for tok in pointer.split("/")[1:]:
        tok = tok.replace("~1", "/").replace("~0", "~")
        if isinstance(cur, list):
            cur = cur[int(tok)]
        else:
            assert tok in cur, f"{pointer}: no {tok!r} in {cur!r:.200}"
            cur = cur[tok]
    return cur


@pytest.mark.parametrize("body", [
    b'{"loss":"mse","inputs":{"predictions":[1.0\x00],"targets":[1.0]}}',
    # jansson alone skips the NUL after a number; the scanner used to stop there,
    # and "\u00000" then passed for the first lifted array (the weights)
    b'{"loss":"mse","weights":[1,1,1],"inputs":{"targets":[1,2,4\x00],"predictions":"\\u00000"}}',
    b'{"loss":"mse","inputs":{"predictions":[1.0],"targets":[1.0]}}\x00',
    b'{"loss":"mse\x00","inputs":{"predictions":[1.0],"targets":[1.0]}}',
], ids=["after_number", "forged_placeholder", "trailing", "in_string"])
def test_nul_byte_is_malformed(lossd, body):
    r = lossd.post("/v1/loss", body)
    err = check_error(r, 400, "malformed_json", "")
    assert "NUL" in err["message"] and f"byte {body.index(0)}" in err["message"], err


@pytest.mark.parametrize("key", [b"predictions\xff", b"p\xc0\xafx", b"p\xed\xa0\x80",
                                 b"p\\ud800", b"p\xf4\x90\x80\x80", b"p\xe2\x82"])
def test_error_echoing_invalid_utf8_is_valid_json(lossd, key):
    """A scanner error names the key before jansson has checked its UTF-8: the
    ill-formed bytes come back as U+FFFD, never raw."""
    body = b'{"loss":"mse","inputs":{"' + key + b'":[1,NaN],"targets":[1,2]}}'
    r = lossd.post("/v1/loss", body)
    assert r.status_code == 422, r.text
    err = json.loads(r.content.decode("utf-8"))["error"]  # strict UTF-8
    assert err["code"] == "non_finite_value", err
    assert err["path"].startswith("/inputs/p") and err["path"].endswith("/1"), err
    if key != b"p\\ud800":
        assert "\ufffd" in err["path"], err
    # a well-formed key comes back as it was sent
    r = lossd.post("/v1/loss", '{"loss":"mse","inputs":{"pr\u00e9d":[1,NaN],"targets":[1,2]}}'.encode())
    assert r.status_code == 422 and r.json()["error"]["path"] == "/inputs/pr\u00e9d/1", r.text


def test_edge_successes(lossd):
    """Valid edge cases next to the errors: an empty batch with sum, null weights,
    subnormal numbers, 1e-400 (underflows to 0, it is not an overflow)."""
    r = lossd.loss({"loss": "mse", "inputs": {"predictions": [], "targets": []}, "reduction": "sum"})
    assert r.status_code == 200, r.text
    got = r.json()
    assert got["n"] == 0 and got["cost"] == 0.0 and got["gradients"] == {"predictions": []}
    r = lossd.loss(mse(weights=None))
    assert r.status_code == 200 and r.json()["cost"] == 1.0, r.text
    r = lossd.loss('{"loss":"mse","inputs":{"predictions":[1e-400,5e-324],"targets":[0,0]}}')
    assert r.status_code == 200, r.text
    got = r.json()
    assert got["cost"] == 0.0 and got["gradients"]["predictions"] == [0.0, 5e-324]


def test_empty_rows_with_sum(lossd):
    r = lossd.loss({"loss": "mse", "inputs": {"predictions": [[], []], "targets": [[], []]}, "reduction": "sum"})
    assert r.status_code == 200, r.text
    got = r.json()
    assert got["n"] == 2 and got["cost"] == 0.0 and got["gradients"] == {"predictions": [[], []]}, got


def test_objective_empty_regularization_list(lossd):
    r = lossd.objective({"tasks": [task("a")], "regularization": []})
    assert r.status_code == 200, r.text
    got = r.json()
    assert got["regularization"] == [] and got["regularization_total"] == 0.0
    # mse of [1, 2] against [0, 0]: (1 + 4) / 2
    assert got["objective"] == 2.5 and got["tasks"][0]["gradients"] == {"predictions": [1.0, 2.0]}


def test_objective_empty_outputs(lossd):
    r = lossd.objective({"tasks": [task("a"), task("b")], "outputs": []})
    assert r.status_code == 200, r.text
    got = r.json()
    assert "objective" not in got and "data_term" not in got
    assert [t["name"] for t in got["tasks"]] == ["a", "b"]
    for t in got["tasks"]:
        assert list(t) == ["name", "loss", "reduction", "n"], t


def test_nesting_pointer_is_deep(lossd):
    r = lossd.loss("[" * 65 + "]" * 65)
    err = check_error(r, 400, "nesting_too_deep")
    assert err["path"] in ("", "/0" * 64, "/0" * 65), err["path"]


def test_malformed_json_message_gives_position(lossd):
    r = lossd.loss('{"loss": "mse",\n  "inputs": {"predictions": [1.0 2.0]}}')
    err = check_error(r, 400, "malformed_json", "")
    msg = err["message"]
    assert "line 2" in msg and "column" in msg, msg


def test_non_finite_message_names_element(lossd):
    r = lossd.loss('{"loss":"mse","inputs":{"predictions":[[1.0],[NaN]],"targets":[[1.0],[1.0]]}}')
    err = check_error(r, 422, "non_finite_value", "/inputs/predictions/1/0")


def test_nested_bad_element_deep_in_large_batch(lossd):
    """A bad element far into a large nested array: pointer with both indices."""
    preds = [[float(i), float(i + 1)] for i in range(5000)]
    text = dumps({"loss": "mse", "inputs": {"predictions": preds, "targets": preds}})
    text = text.replace("[4321.0,4322.0]", "[4321.0,-Infinity]", 1)
    r = lossd.loss(text)
    check_error(r, 422, "non_finite_value", "/inputs/predictions/4321/1")


def test_error_bodies_are_exact_json(lossd):
    """The error JSON parses strictly and nothing follows it."""
    r = lossd.loss("[")
    body = json.loads(r.text)
    check_error_body(body, "malformed_json", "")


# ---- HTTP-level errors on the default server ----

def test_404(lossd):
    for path in ("/", "/nope", "/v1/loss/extra", "/v1/losses/a/b", "/V1/LOSS", "/healthz/"):
        r = lossd.get(path)
        check_error(r, 404, "not_found", "")
    r = lossd.post("/v2/loss", mse())
    check_error(r, 404, "not_found", "")


def test_percent_encoded_paths(lossd):
    """Targets are percent-decoded, but %00 is not a path's end: before, the NUL
    cut "/healthz%00abc" to /healthz (200) and "/v1/loss%00" evaluated."""
    for path in ("/healthz%00abc", "/healthz%00", "/v1/losses%00/x", "/openapi.yaml%00.txt"):
        check_error(lossd.get(path), 404, "not_found", "")
    check_error(lossd.post("/v1/loss%00", mse()), 404, "not_found", "")
    check_error(lossd.get("/v1/losses/mse%00junk"), 404, "unknown_loss", "")
    for path in ("/healthz%zz", "/healthz%2", "/healthz%"):
        check_error(lossd.get(path), 404, "not_found", "")
    # the rest decodes as before
    assert lossd.get("/v1/lo%73ses/ms%65").json()["name"] == "mse"
    assert lossd.get("/health%7A").status_code == 200


def _allow(r):
    return {m.strip() for m in r.headers.get("Allow", "").split(",") if m.strip()}


def test_405(lossd):
    for path in ("/v1/loss", "/v1/objective"):
        for method in ("GET", "PUT", "DELETE", "PATCH"):
            r = lossd.session.request(method, lossd.url(path), timeout=30)
            check_error(r, 405, "method_not_allowed", "")
            assert _allow(r) == {"POST"}, r.headers
    for path in ("/healthz", "/readyz", "/v1/losses", "/v1/losses/mse", "/metrics", "/openapi.yaml"):
        r = lossd.post(path, {})
        check_error(r, 405, "method_not_allowed", "")
        assert "GET" in _allow(r) and _allow(r) <= {"GET", "HEAD"}, r.headers
        r = lossd.session.delete(lossd.url(path), timeout=30)
        check_error(r, 405, "method_not_allowed", "")


def test_411_length_required(lossd):
    with lossd.connect() as s:
        s.sendall(b"POST /v1/loss HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\r\n")
        resp = read_response(s, 10)
    assert resp is not None and resp.status == 411, resp
    check_error_body(resp.json(), "length_required", "")
    assert resp.header("x-request-id")
    lossd.alive_and_exact()


def test_415(lossd):
    for ct in ("text/plain", "application/x-www-form-urlencoded", "application/jsonx", "multipart/form-data"):
        r = lossd.post("/v1/loss", mse(), headers={"Content-Type": ct})
        check_error(r, 415, "unsupported_media_type", "")
    # an unknown Content-Encoding: 415 (server-decisions.md names no code for it)
    r = lossd.post("/v1/loss", mse(), headers={"Content-Encoding": "x-bogus-coding"})
    assert r.status_code == 415, r.text
    err = check_error_body(r.json(), r.json()["error"]["code"], "")
    assert err["code"] in ("unsupported_media_type", "unsupported_content_encoding"), err


def test_json_content_types_accepted(lossd):
    for ct in ("application/json; charset=utf-8", "application/json;charset=UTF-8", "APPLICATION/JSON"):
        r = lossd.post("/v1/loss", mse(), headers={"Content-Type": ct})
        assert r.status_code == 200, (ct, r.text)
        assert r.json()["cost"] == 1.0
    # no Content-Type at all: accepted as JSON
    r = requests.post(lossd.url("/v1/loss"), data=dumps(mse()).encode(), timeout=30)
    assert "Content-Type" not in r.request.headers
    assert r.status_code == 200 and r.json()["cost"] == 1.0, r.text


def test_chunked_request_accepted(lossd):
    def gen():
        text = dumps(mse()).encode()
        for i in range(0, len(text), 7):
            yield text[i:i + 7]
    r = lossd.session.post(lossd.url("/v1/loss"), data=gen(), headers={"Content-Type": "application/json"}, timeout=30)
    assert r.request.headers.get("Transfer-Encoding") == "chunked"
    assert r.status_code == 200 and r.json()["cost"] == 1.0, r.text


def test_content_length_larger_than_default_limit(lossd):
    """64 MiB default: a Content-Length over it is refused before the body."""
    with lossd.connect() as s:
        s.sendall(http_request("POST", "/v1/loss", b"", {"Content-Type": "application/json",
                                                          "Content-Length": str(64 * 2**20 + 1)},
                               content_length=False))
        resp = read_response(s, 10)
    assert resp is not None and resp.status == 413, resp
    check_error_body(resp.json(), "body_too_large", "")


def test_garbage_content_length(lossd):
    with lossd.connect() as s:
        s.sendall(b"POST /v1/loss HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Content-Length: 99999999999999999999999\r\n\r\n")
        resp = read_response(s, 10)
    assert resp is None or resp.status in (400, 413), resp
    lossd.alive_and_exact()


# ---- servers with limits ----

def test_413_content_length_over_limit(start_lossd):
    srv = start_lossd("--max-body-bytes", "1000")
    small = mse()
    assert srv.loss(small).status_code == 200
    big = mse(inputs={"predictions": [0.5] * 300, "targets": [0.25] * 300})
    text = dumps(big)
    assert len(text) > 1000
    r = srv.loss(text)
    check_error(r, 413, "body_too_large", "")
    # exactly at the limit is fine (padding with blanks is valid JSON)
    t = dumps(small)
    r = srv.loss(t + " " * (1000 - len(t)))
    assert r.status_code == 200, r.text
    r = srv.loss(t + " " * (1001 - len(t)))
    check_error(r, 413, "body_too_large", "")
    srv.alive_and_exact()


def test_413_chunked_over_limit(start_lossd):
    srv = start_lossd("--max-body-bytes", "1000")
    text = dumps(mse(inputs={"predictions": [0.5] * 300, "targets": [0.25] * 300})).encode()

    def gen():
        for i in range(0, len(text), 100):
            yield text[i:i + 100]
    try:
        r = srv.session.post(srv.url("/v1/loss"), data=gen(), headers={"Content-Type": "application/json"}, timeout=30)
        check_error(r, 413, "body_too_large", "")
    except requests.ConnectionError:
        pytest.fail("the server closed the connection instead of answering 413")
    # a chunked body much larger than the limit: 413, or the connection is dropped
    with srv.connect() as s:
        s.sendall(b"POST /v1/loss HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Transfer-Encoding: chunked\r\n\r\n")
        try:
            for _ in range(300):
                s.sendall(b"400\r\n" + b" " * 1024 + b"\r\n")
            s.sendall(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass
        resp = read_response(s, 10)
    if resp is not None:
        assert resp.status == 413, resp
        check_error_body(resp.json(), "body_too_large", "")
    srv.alive_and_exact()


def test_413_values_outside_numeric_arrays(lossd):
    """Values that are not in a rectangular array of numbers become one jansson
    value each (40 bytes and more): past 1,000,000 of them (some 2 MB of body that
    would take 50 MB and more) the request is 413 before jansson parses it."""
    ragged = "[[0]," + ",".join(["0"] * 1000001) + "]"
    r = lossd.post("/v1/loss", '{"loss":"mse","inputs":{"predictions":' + ragged + ',"targets":[0]}}')
    check_error(r, 413, "too_many_elements")
    assert r.json()["error"]["path"].startswith("/inputs/predictions/"), r.text
    r = lossd.post("/v1/loss", "[" + ",".join(["0"] * 1000001) + "]")
    check_error(r, 413, "too_many_elements")
    # just under: the ragged array's own error
    ragged = "[[0]," + ",".join(["0"] * 999990) + "]"
    r = lossd.post("/v1/loss", '{"loss":"mse","inputs":{"predictions":' + ragged + ',"targets":[0]}}')
    check_error(r, 422, "invalid_tensor")
    lossd.alive_and_exact()


def test_413_too_many_tasks_or_penalties(lossd):
    """An objective has at most 10,000 tasks and 10,000 penalties: each takes a
    few KB of bookkeeping however small it is."""
    tiny = {"loss": "mse", "inputs": {"predictions": [1.0], "targets": [0.0]}}
    tasks = [dict(tiny, name=f"t{i}") for i in range(10000)]
    r = lossd.objective({"tasks": tasks, "outputs": ["objective"]})
    assert r.status_code == 200 and r.json()["data_term"] == 10000.0, r.text[:300]
    r = lossd.objective({"tasks": tasks + [dict(tiny, name="one more")], "outputs": ["objective"]})
    check_error(r, 413, "too_many_elements", "/tasks")
    pen = {"kind": "l2", "lambda": 1.0, "params": [1.0]}
    r = lossd.objective({"tasks": tasks[:1], "regularization": [pen] * 10001})
    check_error(r, 413, "too_many_elements", "/regularization")
    lossd.alive_and_exact()


def test_413_too_many_elements(start_lossd):
    srv = start_lossd("--max-elements", "10")
    r = srv.loss({"loss": "mse", "inputs": {"predictions": [1.0] * 5, "targets": [1.0] * 5}})
    assert r.status_code == 200, r.text
    r = srv.loss({"loss": "mse", "inputs": {"predictions": [1.0] * 6, "targets": [1.0] * 6}})
    check_error(r, 413, "too_many_elements")
    r = srv.loss({"loss": "mse", "inputs": {"predictions": {"shape": [11], "data": [1.0] * 11}, "targets": [1.0] * 11}})
    check_error(r, 413, "too_many_elements")
    r = srv.objective({"tasks": [task("a", inputs={"predictions": [1.0] * 4, "targets": [1.0] * 4}),
                                 task("b", inputs={"predictions": [1.0] * 2, "targets": [1.0] * 2})]})
    assert r.status_code == 413 and r.json()["error"]["code"] == "too_many_elements", r.text
    srv.alive_and_exact()


@pytest.fixture
def keyed(start_lossd, tmp_path):
    keyfile = tmp_path / "key"
    keyfile.write_text("s3cret-KEY_123\n")
    return start_lossd("--api-key-file", str(keyfile))


def test_401(keyed):
    srv = keyed
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"X-API-Key": "wrong"},
                    {"Authorization": "Basic czNjcmV0LUtFWV8xMjM="}, {"Authorization": "Bearer s3cret-KEY_12"},
                    {"Authorization": "Bearer s3cret-KEY_1234"}, {"X-API-Key": ""}):
        r = srv.post("/v1/loss", mse(), headers=headers)
        check_error(r, 401, "unauthorized", "")
        assert r.headers.get("WWW-Authenticate", "").startswith("Bearer"), r.headers
    for path in ("/v1/losses", "/v1/losses/mse", "/metrics", "/openapi.yaml"):
        check_error(srv.get(path), 401, "unauthorized", "")
    r = srv.post("/v1/objective", {"tasks": [task("a")]})
    check_error(r, 401, "unauthorized", "")


def test_api_key_accepted(keyed):
    srv = keyed
    for headers in ({"Authorization": "Bearer s3cret-KEY_123"}, {"X-API-Key": "s3cret-KEY_123"},
                    {"authorization": "bearer s3cret-KEY_123"},
                    # the whitespace that may end a header's value is not the key's
                    {"X-API-Key": "s3cret-KEY_123 "}, {"Authorization": "Bearer s3cret-KEY_123\t"}):
        r = srv.post("/v1/loss", mse(), headers=headers)
        assert r.status_code == 200 and r.json()["cost"] == 1.0, (headers, r.text)
        assert srv.get("/v1/losses", headers=headers).status_code == 200
        assert srv.get("/metrics", headers=headers).status_code == 200
    # liveness and readiness need no key
    assert srv.get("/healthz").status_code == 200
    assert srv.get("/readyz").status_code == 200


# ---- 503 overloaded ----

def _big_mse(n, seed=0):
    """An mse batch whose cost and gradients are exact in any summation order:
    residuals are multiples of 1/64 below 128, so every partial sum is exact."""
    rng = np.random.default_rng(seed)
    p = rng.integers(-4096, 4096, size=n) / 64.0
    t = rng.integers(-4096, 4096, size=n) / 64.0
    text = ('{"loss":"mse","inputs":{"predictions":[' + ",".join(repr(float(v)) for v in p) +
            '],"targets":[' + ",".join(repr(float(v)) for v in t) + ']},"outputs":["cost","gradients"]}')
    r = p - t
    cost = float((r * r).sum()) / n   # exact sum, one rounding
    grad = 2.0 * r / n
    return text.encode(), cost, grad


def _check_big(resp, cost, grad):
    assert resp.status == 200, resp
    got = resp.json()
    assert got["cost"] == cost, (got["cost"], cost)
    g = np.array(got["gradients"]["predictions"])
    assert g.shape == grad.shape
    assert np.all(np.abs(g - grad) <= 1e-15 * np.abs(grad)), "gradients differ"


def test_503_overloaded_deterministic(start_lossd, slow):
    """--max-inflight 1: a request whose headers are in (its body still coming)
    is in flight; any other POST meanwhile gets 503 overloaded + Retry-After.
    The in-flight one then gets its exact 200."""
    srv = start_lossd("--max-inflight", "1")
    body, cost, grad = _big_mse(200000)
    with srv.connect(timeout=60 * slow) as big:
        big.sendall(http_request("POST", "/v1/loss", b"", {"Content-Type": "application/json",
                                                           "Content-Length": str(len(body))},
                                 content_length=False))
        big.sendall(body[:len(body) // 2])
        time.sleep(0.3 * slow)
        r = srv.loss(mse())
        check_error(r, 503, "overloaded", "")
        assert r.headers.get("Retry-After") == "1", r.headers
        r = srv.objective({"tasks": [task("a")]})
        check_error(r, 503, "overloaded", "")
        # GETs are not work: they are still answered
        assert srv.get("/healthz").status_code == 200
        assert srv.get("/readyz").status_code == 200
        big.sendall(body[len(body) // 2:])
        resp = read_response(big, 60 * slow)
    _check_big(resp, cost, grad)
    srv.alive_and_exact()


def test_503_overloaded_threads(start_lossd, slow):
    """The brief's scenario: a large request in a thread, others sent at once.
    Over a few tries at least one 503 (with Retry-After) is seen while the large
    request is in flight, and the large request is then 200 and exact.  (When a
    small request happens to be admitted first, the large one may be the one
    refused: legitimate, and that attempt is retried.)"""
    srv = start_lossd("--max-inflight", "1")
    body, cost, grad = _big_mse(400000, seed=1)
    seen_503 = 0
    outcomes = []
    for attempt in range(8):
        result = {}

        def send_big():
            with srv.connect(timeout=60 * slow) as s:
                try:
                    s.sendall(http_request("POST", "/v1/loss", body, {"Content-Type": "application/json"}))
                except (BrokenPipeError, ConnectionResetError) as e:
                    result["send_error"] = repr(e)  # refused early; the answer may still be readable
                result["resp"] = read_response(s, 60 * slow)
        th = threading.Thread(target=send_big)
        th.start()
        time.sleep(0.002)
        answers = []
        deadline = time.monotonic() + 5 * slow
        while th.is_alive() and time.monotonic() < deadline:
            r = srv.loss(mse())
            answers.append(r)
            if r.status_code == 503:
                break
        th.join(120 * slow)
        assert not th.is_alive()
        for r in answers:
            if r.status_code == 503:
                check_error(r, 503, "overloaded", "")
                assert r.headers.get("Retry-After") == "1"
            else:
                assert r.status_code == 200 and r.json()["cost"] == 1.0, r.text
        big = result.get("resp")
        if big is not None and big.status == 200:
            _check_big(big, cost, grad)
            n503 = sum(r.status_code == 503 for r in answers)
            outcomes.append(f"big 200, {n503} small 503")
            seen_503 += n503
        else:
            # the big request was refused: only legitimate if a small one was in flight
            assert any(r.status_code == 200 for r in answers), \
                f"the large request failed ({big!r}, {result.get('send_error')}) with nothing else in flight"
            if big is not None:
                assert big.status == 503, big
                check_error_body(big.json(), "overloaded", "")
            outcomes.append("big refused (a small request was in flight)")
        if seen_503:
            break
    assert seen_503 >= 1, f"no 503 while a large request was in flight in 8 attempts: {outcomes}"
    srv.alive_and_exact()
