-- Resume: runs start again on schedule, workers come back.
if obj.spec == nil then
  obj.spec = {}
end
obj.spec.suspend = false
return obj
