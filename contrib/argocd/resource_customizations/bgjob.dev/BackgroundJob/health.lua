-- Argo CD health check for bgjob.dev/BackgroundJob.
-- Reads what the operator writes: status.observedGeneration, the conditions
-- (Ready, Progressing, Degraded, Stalled) and status.state.
-- Lua 5.1 as gopher-lua runs it, with no library but base and table: no string
-- methods, no goto, no integer division, so it runs with useOpenLibs off.
local hs = {}

local function find(conditions, kind)
  if conditions == nil then
    return nil
  end
  for _, condition in ipairs(conditions) do
    if condition.type == kind then
      return condition
    end
  end
  return nil
end

local function describe(condition)
  local reason = condition.reason or ""
  local message = condition.message or ""
  if reason ~= "" and message ~= "" then
    return reason .. ": " .. message
  end
  if message ~= "" then
    return message
  end
  return reason
end

local status = obj.status
if status == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to report a status"
  return hs
end

-- A status written for an older spec says nothing about the current one.
local generation = obj.metadata.generation
if generation ~= nil then
  local observed = status.observedGeneration
  if observed == nil or observed < generation then
    hs.status = "Progressing"
    hs.message = "Waiting for the operator to observe generation " .. generation
    return hs
  end
end

local conditions = status.conditions
local ready = find(conditions, "Ready")
if generation ~= nil and ready ~= nil and ready.observedGeneration ~= nil
    and ready.observedGeneration < generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe generation " .. generation
  return hs
end

-- Degraded: the spec cannot be honoured (a missing Secret, a bad time zone).
local degraded = find(conditions, "Degraded")
if degraded ~= nil and degraded.status == "True" then
  hs.status = "Degraded"
  hs.message = describe(degraded)
  return hs
end

-- Stalled: only a change by the user helps (also a once-run that failed).
local stalled = find(conditions, "Stalled")
if stalled ~= nil and stalled.status == "True" then
  hs.status = "Degraded"
  hs.message = describe(stalled)
  return hs
end

if status.state == "Failed" or status.state == "Degraded" then
  hs.status = "Degraded"
  if ready ~= nil then
    hs.message = describe(ready)
  else
    hs.message = "The BackgroundJob is " .. status.state
  end
  return hs
end

if status.state == "Suspended" then
  hs.status = "Suspended"
  hs.message = "Suspended: spec.suspend is true"
  return hs
end

if ready == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the Ready condition"
  return hs
end

if ready.status == "True" then
  hs.status = "Healthy"
  hs.message = ready.message or ""
  return hs
end

hs.status = "Progressing"
hs.message = describe(ready)
return hs
