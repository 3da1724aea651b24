# The build of every function, included by the two-line Makefile of each CodeUri folder (SAM wants a Makefile
# with a build-<LogicalId> target in each): that folder's *.py (the handler module) at the artifact root, and
# nothing else. mcpdo and every dependency come from PythonLayer (/opt/python), built once for all functions
# by layers/python/Makefile; Node and the runner from RuntimeLayer. A function's Makefile reads:
#
#     include $(dir $(lastword $(MAKEFILE_LIST)))../handler.mk
#     build-McpFunction: ; $(build-function)
#
# SAM runs make from a scratch copy of the folder, with `--makefile` naming the Makefile in the source tree:
# the function's folder is the including Makefile's, the repository root this file's parent.
HANDLER_MK := $(lastword $(MAKEFILE_LIST))
FUNCTION_DIR := $(abspath $(dir $(lastword $(filter-out $(HANDLER_MK),$(MAKEFILE_LIST)))))
ROOT := $(abspath $(dir $(HANDLER_MK))/..)
PYTHON ?= python3
CHECK := $(PYTHON) $(ROOT)/layers/build_check.py
HANDLER_FILES = $(wildcard $(FUNCTION_DIR)/*.py)

# A canned recipe: $@ is the target (build-<LogicalId>), the check is told which function it built.
define build-function
@test -n "$(ARTIFACTS_DIR)" || { echo "ARTIFACTS_DIR is not set: sam build sets it" >&2; exit 1; }
$(if $(HANDLER_FILES),cp $(HANDLER_FILES) "$(ARTIFACTS_DIR)/",@echo "$(FUNCTION_DIR) has no *.py yet: no handler copied")
$(CHECK) check-function "$(ARTIFACTS_DIR)" $(@:build-%=%)
endef
