// argocd-lua runs Argo CD resource customization scripts (health.lua, discovery.lua,
// action.lua) in gopher-lua, the Lua VM Argo CD embeds, set up as Argo CD sets it up:
// no standard libraries but package, base and table; globals `obj` and `actionParams`;
// a one-second deadline. tests/unit/test_argocd.py drives it.
//
// stdin: a JSON array of {"script": "...", "obj": {...}, "params": {"k": "v"}}
// stdout: a JSON array of {"result": <the returned table as JSON>} or {"error": "..."}
//
// Numbers reach Lua as float64, as they do from Argo CD's YAML test harness.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"time"

	lua "github.com/yuin/gopher-lua"
)

type request struct {
	Script string            `json:"script"`
	Obj    map[string]any    `json:"obj"`
	Params map[string]string `json:"params"`
}

type response struct {
	Result any    `json:"result,omitempty"`
	Error  string `json:"error,omitempty"`
}

func main() {
	var requests []request
	if err := json.NewDecoder(os.Stdin).Decode(&requests); err != nil {
		fmt.Fprintln(os.Stderr, "argocd-lua: bad input:", err)
		os.Exit(2)
	}
	responses := make([]response, 0, len(requests))
	for _, req := range requests {
		result, err := run(req)
		if err != nil {
			responses = append(responses, response{Error: err.Error()})
			continue
		}
		responses = append(responses, response{Result: result})
	}
	if err := json.NewEncoder(os.Stdout).Encode(responses); err != nil {
		fmt.Fprintln(os.Stderr, "argocd-lua:", err)
		os.Exit(2)
	}
}

func run(req request) (any, error) {
	l := lua.NewState(lua.Options{SkipOpenLibs: true})
	defer l.Close()
	for _, lib := range []struct {
		name string
		open lua.LGFunction
	}{
		{lua.LoadLibName, lua.OpenPackage},
		{lua.BaseLibName, lua.OpenBase},
		{lua.TabLibName, lua.OpenTable},
	} {
		if err := l.CallByParam(lua.P{Fn: l.NewFunction(lib.open), NRet: 0, Protect: true}, lua.LString(lib.name)); err != nil {
			return nil, err
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	l.SetContext(ctx)
	params := l.CreateTable(0, len(req.Params))
	for k, v := range req.Params {
		params.RawSetH(lua.LString(k), lua.LString(v))
	}
	l.SetGlobal("actionParams", params)
	l.SetGlobal("obj", toLua(l, req.Obj))
	if err := l.DoString(req.Script); err != nil {
		return nil, err
	}
	switch value := l.Get(-1).(type) {
	case *lua.LTable:
		return fromLua(value)
	case *lua.LNilType:
		return nil, nil
	default:
		return nil, fmt.Errorf("expect table output from Lua script, not %s", value.Type())
	}
}

func toLua(l *lua.LState, value any) lua.LValue {
	switch v := value.(type) {
	case nil:
		return lua.LNil
	case bool:
		return lua.LBool(v)
	case float64:
		return lua.LNumber(v)
	case string:
		return lua.LString(v)
	case []any:
		table := l.CreateTable(len(v), 0)
		for _, item := range v {
			table.Append(toLua(l, item))
		}
		return table
	case map[string]any:
		table := l.CreateTable(0, len(v))
		for key, item := range v {
			table.RawSetH(lua.LString(key), toLua(l, item))
		}
		return table
	default:
		return lua.LNil
	}
}

// fromLua encodes a table as Argo CD's JSON encoding does: an empty table is an
// empty array, a table with keys 1..n an array, anything else an object.
func fromLua(value lua.LValue) (any, error) {
	switch v := value.(type) {
	case lua.LBool:
		return bool(v), nil
	case lua.LNumber:
		return float64(v), nil
	case lua.LString:
		return string(v), nil
	case *lua.LNilType:
		return nil, nil
	case *lua.LTable:
		if n := v.MaxN(); n > 0 {
			items := make([]any, 0, n)
			for i := 1; i <= n; i++ {
				item, err := fromLua(v.RawGetInt(i))
				if err != nil {
					return nil, err
				}
				items = append(items, item)
			}
			return items, nil
		}
		object := map[string]any{}
		var failure error
		v.ForEach(func(key, item lua.LValue) {
			name, ok := key.(lua.LString)
			if !ok {
				failure = fmt.Errorf("cannot encode a table with a %s key", key.Type())
				return
			}
			converted, err := fromLua(item)
			if err != nil {
				failure = err
				return
			}
			object[string(name)] = converted
		})
		if failure != nil {
			return nil, failure
		}
		if len(object) == 0 {
			return []any{}, nil
		}
		return object, nil
	default:
		return nil, fmt.Errorf("cannot encode a %s", value.Type())
	}
}
