// Argo CD's Lua VM, for tests/unit/test_argocd.py. The gopher-lua version is the one
// Argo CD's go.mod requires.
module bgjob.dev/hack/argocd-lua

go 1.24

require github.com/yuin/gopher-lua v1.1.2
