"""`longanim doctor`: is this machine and weights folder ready for a long job?"""

from __future__ import annotations

NAME = "doctor"
HELP = "check a LongAnimation weights folder component by component, and the GPU and driver"


def add_arguments(parser) -> None:
    parser.add_argument("--weights", required=True, metavar="DIR",
                        help="folder laid out like the release (control_module.safetensors, glm_module.safetensors, "
                             "CogVideoX1.5-5B-I2V/, sk_model.pth, Video_XL/VideoXL_weight_8/)")
    parser.add_argument("--require-gpu", action="store_true",
                        help="treat a missing or too small GPU as broken (default: a warning)")
    parser.add_argument("--no-gpu-check", action="store_true", help="check the weights only")
    parser.add_argument("--no-memory", action="store_true",
                        help="the backend will run with memory=false: do not require a memory encoder")


def run(args) -> int:
    from longanim.engine.backends.longanimation.doctor import FAIL, check_gpu, check_weights, format_report

    checks = check_weights(args.weights, memory=not args.no_memory)
    if not args.no_gpu_check:
        checks.append(check_gpu(require=args.require_gpu))
    print(format_report(checks))
    return 1 if any(c.status == FAIL for c in checks) else 0
