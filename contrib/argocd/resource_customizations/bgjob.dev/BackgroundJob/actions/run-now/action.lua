-- Start one run now: set bgjob.dev/run-now to a value the operator has not
-- handled yet. The value counts up from the larger of the annotation and
-- status.runNowHandled, so it is new, never reused (the run's Job name is
-- derived from it) and the same for the same input (Argo CD's action tests
-- compare outputs). The operator honours overlap and singleton.
local previous = 0
if obj.metadata.annotations ~= nil then
  previous = tonumber(obj.metadata.annotations["bgjob.dev/run-now"]) or 0
else
  obj.metadata.annotations = {}
end
if obj.status ~= nil and obj.status.runNowHandled ~= nil then
  local handled = tonumber(obj.status.runNowHandled) or 0
  if handled > previous then
    previous = handled
  end
end
obj.metadata.annotations["bgjob.dev/run-now"] = tostring(previous + 1)
return obj
