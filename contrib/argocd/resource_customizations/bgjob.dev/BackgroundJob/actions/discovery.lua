-- Resource actions for bgjob.dev/BackgroundJob: run-now, suspend, resume.
-- Lua 5.1 with the base and table libraries only, as Argo CD runs actions.
local actions = {}

local suspended = false
local runs = false
if obj.spec ~= nil then
  suspended = obj.spec.suspend == true
  if obj.spec.trigger ~= nil then
    runs = obj.spec.trigger.schedule ~= nil or obj.spec.trigger.once ~= nil
  end
end

-- A manual run is for schedule and once triggers; it also works while suspended,
-- like `kubectl create job --from=cronjob/...`.
actions["run-now"] = {
  ["disabled"] = not runs,
  ["iconClass"] = "fa fa-fw fa-play",
  ["displayName"] = "Run now"
}
actions["suspend"] = {
  ["disabled"] = suspended,
  ["iconClass"] = "fa fa-fw fa-pause-circle",
  ["displayName"] = "Suspend"
}
actions["resume"] = {
  ["disabled"] = not suspended,
  ["iconClass"] = "fa fa-fw fa-play-circle",
  ["displayName"] = "Resume"
}
return actions
