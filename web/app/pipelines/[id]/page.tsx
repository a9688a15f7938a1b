import Shell from "@/components/Shell";
import PipelineDetail from "@/components/PipelineDetail";

export default function PipelinePage() {
  return (
    <Shell>
      <PipelineDetail />
    </Shell>
  );
}
